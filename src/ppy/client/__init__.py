"""Python clients on the same wire codecs as the server: blocking and asyncio."""
