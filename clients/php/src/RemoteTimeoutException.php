<?php

declare(strict_types=1);

namespace Ppy;

/**
 * JSON-RPC error -32001. The call ran past its deadline on the server (--timeout, or the client's
 * timeout sent with the call). A Ppy\TimeoutException too, like a timeout the client noticed itself.
 */
class RemoteTimeoutException extends RemoteException implements TimeoutException
{
}
