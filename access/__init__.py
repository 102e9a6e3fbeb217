"""Who may read: bearer tokens kept hashed, shared by the console and the projector."""
