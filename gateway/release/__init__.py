"""What leaves an owner, and the one pipeline every release goes through."""
