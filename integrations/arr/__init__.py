"""Sonarr and Radarr: their Webhook connection tells where an imported, renamed or deleted file went."""
