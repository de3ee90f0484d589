"""I/O at the edges: asyncio listeners, connections, the HTTP app, the process lifecycle."""
