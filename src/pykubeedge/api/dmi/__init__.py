"""The Device Management Interface between edgecore and mappers."""
