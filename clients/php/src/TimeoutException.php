<?php

declare(strict_types=1);

namespace Ppy;

/**
 * Any timeout, whichever side noticed it: `catch (Ppy\TimeoutException $e)` catches both
 *
 * - Ppy\ClientTimeoutException: no connection or no reply within the client's `connect_timeout` /
 *   `timeout` (the connection is dropped; the call may or may not have run on the server), and
 * - Ppy\RemoteTimeoutException: the server's JSON-RPC error -32001, the call ran past its deadline
 *   there (`--timeout`, or the client's `timeout` option, which is sent with every call so that the
 *   server gives up at the same moment — the usual way a PHP caller sees a timeout).
 *
 * It is an interface (the two are a PpyException and a RemoteException), so it cannot be
 * instantiated: throw a ClientTimeoutException instead.
 */
interface TimeoutException extends ExceptionInterface
{
}
