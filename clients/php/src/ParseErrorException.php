<?php

declare(strict_types=1);

namespace Ppy;

/** JSON-RPC error -32700. The request bytes were not JSON (for this client: stale bytes on a reused socket). */
class ParseErrorException extends RemoteException
{
}
