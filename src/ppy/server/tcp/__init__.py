"""TCP and Unix-socket connections: dialect sniffing, then the legacy or lines handler, with flow control."""
