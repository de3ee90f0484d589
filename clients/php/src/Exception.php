<?php

declare(strict_types=1);

namespace Ppy;

/**
 * Base of every exception the ppy client throws, so one `catch (Ppy\Exception $e)` covers them all.
 *
 *     Ppy\Exception
 *     ├── Ppy\ConnectionException       cannot connect, or the connection broke mid-call
 *     │   └── Ppy\ProtocolException     the server sent bytes that are not a valid reply
 *     ├── Ppy\TimeoutException          no reply (or no connection) within the client's timeout
 *     └── Ppy\RemoteException           the server answered with a JSON-RPC error (getCode())
 *         ├── ParseErrorException          -32700
 *         ├── InvalidRequestException      -32600
 *         ├── MethodNotFoundException      -32601
 *         ├── InvalidParamsException       -32602
 *         ├── InternalErrorException       -32603
 *         ├── ApplicationException         -32000  the Python function raised (getType())
 *         ├── RemoteTimeoutException       -32001  the call ran past its deadline on the server
 *         ├── OverloadedException          -32002  too many calls in flight: retry later
 *         ├── UnauthorizedException        -32003  token missing or wrong
 *         └── WorkerCrashedException       -32004  the process running the call died
 *
 * Mistakes in the calling code (an unknown option, mixing positional and named
 * arguments, a value JSON cannot carry) throw \InvalidArgumentException instead:
 * they are bugs to fix, not conditions to handle at run time.
 */
class Exception extends \RuntimeException
{
}
