"""Sans-I/O codecs: bytes in, messages out; messages in, bytes out.

Nothing here touches a socket, an event loop or the config object; a test
pins that this package imports neither ``asyncio`` nor ``socket``.
"""
