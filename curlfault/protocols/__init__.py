"""Protocol servers for fake endpoints; each sees a byte transport, never the network."""
