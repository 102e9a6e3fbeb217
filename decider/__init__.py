"""The brain: pure decide/evolve per message, and the admission, deadline and apply shells."""
