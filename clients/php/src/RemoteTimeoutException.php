<?php

declare(strict_types=1);

namespace Ppy;

/** JSON-RPC error -32001. The call ran past its deadline on the server (--timeout, or the client's timeout sent with the call). */
class RemoteTimeoutException extends RemoteException
{
}
