"""A demo next-hop MTA: accepts every message over SMTP and stores it in a folder.

Not part of the gateway (nothing of katagate imports it): a stand-in for the MTA the gateway
delivers to, for demos and tests. See README.md.
"""
