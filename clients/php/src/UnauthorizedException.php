<?php

declare(strict_types=1);

namespace Ppy;

/** JSON-RPC error -32003. The server requires a token and it was missing or wrong: pass the 'token' option. */
class UnauthorizedException extends RemoteException
{
}
