<?php

// phpcs:disable PSR1.Files.SideEffects -- the class, and its old name as an alias, must come together

declare(strict_types=1);

namespace Ppy;

/**
 * Base of every exception the ppy client throws, so one `catch (Ppy\PpyException $e)` (or
 * `catch (Ppy\ExceptionInterface $e)`) covers them all.
 *
 *     Ppy\PpyException                     (implements Ppy\ExceptionInterface)
 *     ├── Ppy\ConnectionException       cannot connect, or the connection broke mid-call
 *     │   └── Ppy\ProtocolException     the server sent bytes that are not a valid reply
 *     ├── Ppy\ClientTimeoutException    no reply (or no connection) within the client's timeout  [TimeoutException]
 *     └── Ppy\RemoteException           the server answered with a JSON-RPC error (getCode())
 *         ├── ParseErrorException          -32700
 *         ├── InvalidRequestException      -32600
 *         ├── MethodNotFoundException      -32601
 *         ├── InvalidParamsException       -32602
 *         ├── InternalErrorException       -32603
 *         ├── ApplicationException         -32000  the Python function raised (getType())
 *         ├── RemoteTimeoutException       -32001  the call ran past its deadline on the server  [TimeoutException]
 *         ├── OverloadedException          -32002  too many calls in flight: retry later
 *         ├── UnauthorizedException        -32003  token missing or wrong
 *         ├── WorkerCrashedException       -32004  the process running the call died
 *         └── CancelledException           -32005  the client cancelled the call (rpc.cancel, a stream left early)
 *
 * Ppy\TimeoutException is an interface that both timeouts implement, so `catch (Ppy\TimeoutException $e)`
 * catches a timeout whichever side noticed it. The error-code => class table is RemoteException::CLASSES.
 *
 * Mistakes in the calling code (an unknown option, mixing positional and named
 * arguments, a value JSON cannot carry) throw \InvalidArgumentException instead:
 * they are bugs to fix, not conditions to handle at run time.
 *
 * This class was called Ppy\Exception before (a name that shadows \Exception inside the namespace).
 */
class PpyException extends \RuntimeException implements ExceptionInterface
{
}

// Ppy\Exception, the old name, is kept as an alias for one release (deprecated). It is made here,
// as soon as any ppy exception class loads, because `catch (Ppy\Exception $e)` never triggers the
// autoloader: an alias made only on demand would not exist yet, and the catch would match nothing.
class_alias(PpyException::class, 'Ppy\Exception');
