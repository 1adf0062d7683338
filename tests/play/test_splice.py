"""The proxy's zero-copy path (os.splice): byte-exact bodies and ranges, resume after a cut, keep-alive intact."""
from __future__ import annotations

import aiohttp
import pytest

from bridge.play import splice
from tests.play.conftest import BridgeFactory
from tests.play.media import Media


@pytest.fixture(autouse=True)
def splice_small_bodies(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test media are ~2 MB, below the size the proxy splices by default."""
    monkeypatch.setattr(splice, "SPLICE_MIN_BYTES", 0)


async def test_spliced_bodies_and_ranges_are_byte_exact(make_bridge: BridgeFactory, media: Media) -> None:
    bridge = await make_bridge("proxy")
    mapping = bridge.plant("show-2-1", media.mp4_dir, "episode.mp4")
    link = bridge.link(mapping["id"])
    original = (media.mp4_dir / "episode.mp4").read_bytes()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:  # one kept-alive socket
        async with session.get(link) as response:
            assert response.status == 200
            assert await response.read() == original
        for first, last in ((0, 0), (1000, 1_200_000), (len(original) - 10, len(original) - 1)):
            async with session.get(link, headers={"Range": f"bytes={first}-{last}"}) as response:
                assert response.status == 206
                assert response.headers["Content-Range"] == f"bytes {first}-{last}/{len(original)}"
                assert await response.read() == original[first:last + 1]
        async with session.head(link) as response:  # the socket used by the splices still speaks HTTP
            assert response.status == 200 and int(response.headers["Content-Length"]) == len(original)
    assert bridge.services.play.stats["spliced_bytes"] >= len(original) + 1_199_001


async def test_spliced_body_cut_off_is_resumed_byte_exact(make_bridge: BridgeFactory, media: Media) -> None:
    bridge = await make_bridge("proxy")
    mapping = bridge.plant("show-2-2", media.mp4_dir, "episode.mp4")
    bridge.provider.streams["show-2-2"].cut_after = 700_000
    original = (media.mp4_dir / "episode.mp4").read_bytes()
    async with aiohttp.ClientSession() as session, session.get(bridge.link(mapping["id"])) as response:
        assert await response.read() == original
    assert bridge.services.play.stats["resumes"] == 1
    assert bridge.services.play.stats["spliced_bytes"] == len(original)


async def test_player_leaving_mid_splice_leaves_the_bridge_serving(make_bridge: BridgeFactory, media: Media) -> None:
    bridge = await make_bridge("proxy")
    mapping = bridge.plant("show-2-3", media.mp4_dir, "episode.mp4")
    link = bridge.link(mapping["id"])
    original = (media.mp4_dir / "episode.mp4").read_bytes()
    for _ in range(3):
        async with aiohttp.ClientSession() as session, session.get(link) as response:
            assert len(await response.content.readexactly(4096)) == 4096  # then hang up mid-body
    async with aiohttp.ClientSession() as session, session.get(link) as response:
        assert await response.read() == original


async def test_upstream_stall_mid_splice_delivers_the_pipe_then_resumes(make_bridge: BridgeFactory,
                                                                         media: Media) -> None:
    """The upstream goes quiet mid-body (connection open, no bytes): what the pipe holds still reaches the
    player, and the rest comes from a Range request at the exact byte, so the body is whole and byte-exact."""
    bridge = await make_bridge("proxy")
    mapping = bridge.plant("show-2-4", media.mp4_dir, "episode.mp4", ttl=4)
    bridge.provider.streams["show-2-4"].stall_after = 900_000  # silent until the token has expired
    session = bridge.services.play.session
    session._timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=0.5)  # a short stall deadline
    original = (media.mp4_dir / "episode.mp4").read_bytes()
    async with aiohttp.ClientSession() as client, client.get(bridge.link(mapping["id"])) as response:
        assert await response.read() == original
    assert bridge.provider.stalls == 1
    assert bridge.services.play.stats["resumes"] == 1
    assert bridge.services.play.stats["spliced_bytes"] >= 900_000


@pytest.mark.parametrize("threshold, pooled", [(4 * 1024 * 1024, True), (0, False)])
async def test_small_bodies_keep_the_upstream_connection(threshold: int, pooled: bool, make_bridge: BridgeFactory,
                                                         media: Media, monkeypatch: pytest.MonkeyPatch) -> None:
    """Below SPLICE_MIN_BYTES the loop copies and the upstream connection is reused for the next request (no
    connect and close per HLS segment); a spliced one is closed after its body."""
    monkeypatch.setattr(splice, "SPLICE_MIN_BYTES", threshold)
    bridge = await make_bridge("proxy")
    mapping = bridge.plant("show-2-5", media.mp4_dir, "episode.mp4")
    original = (media.mp4_dir / "episode.mp4").read_bytes()
    async with aiohttp.ClientSession() as session:
        for first in (0, 500_000, 1_000_000):
            headers = {"Range": f"bytes={first}-{first + 199_999}"}
            async with session.get(bridge.link(mapping["id"]), headers=headers) as response:
                assert await response.read() == original[first:first + 200_000]
    peers = {hit.peer for hit in bridge.provider.hits_for("show-2-5")}
    assert (len(peers) == 1) is pooled, peers
    assert (bridge.services.play.stats.get("spliced_bytes", 0) == 0) is pooled
