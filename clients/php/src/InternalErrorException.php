<?php

declare(strict_types=1);

namespace Ppy;

/** JSON-RPC error -32603. The server could not complete the call (e.g. the result is not JSON-encodable, the module failed to import). */
class InternalErrorException extends RemoteException
{
}
