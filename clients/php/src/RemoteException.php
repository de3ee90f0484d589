<?php

declare(strict_types=1);

namespace Ppy;

/**
 * The server answered with a JSON-RPC error object {"code", "message", "data"}.
 *
 * getCode() is the JSON-RPC code, getMessage() the server's message (it says what
 * to do), getData() the "data" object, getType() the Python exception class name
 * for application errors (-32000). fromError() picks the subclass for the code.
 */
class RemoteException extends PpyException
{
    /** JSON-RPC error code => exception class. */
    public const CLASSES = [
        -32700 => ParseErrorException::class,
        -32600 => InvalidRequestException::class,
        -32601 => MethodNotFoundException::class,
        -32602 => InvalidParamsException::class,
        -32603 => InternalErrorException::class,
        -32000 => ApplicationException::class,
        -32001 => RemoteTimeoutException::class,
        -32002 => OverloadedException::class,
        -32003 => UnauthorizedException::class,
        -32004 => WorkerCrashedException::class,
        -32005 => CancelledException::class,
    ];

    /** @var array<string, mixed> */
    private array $data;

    /** @param array<string, mixed> $data */
    final public function __construct(string $message, int $code, array $data = [], ?\Throwable $previous = null)
    {
        parent::__construct($message, $code, $previous);
        $this->data = $data;
    }

    /** The exception for a decoded JSON-RPC error object (as an associative array). */
    public static function fromError(mixed $error): self
    {
        if (!is_array($error) || !isset($error['code']) || !is_int($error['code'])) {
            return new InternalErrorException(
                'malformed error object from server: ' . json_encode($error, JSON_PARTIAL_OUTPUT_ON_ERROR),
                -32603,
            );
        }
        $code = $error['code'];
        $data = $error['data'] ?? [];
        if (!is_array($data)) {
            $data = ['value' => $data];
        }
        $message = isset($error['message']) && is_string($error['message']) ? $error['message'] : '';
        $class = self::CLASSES[$code] ?? self::class;
        return new $class($message, $code, $data);
    }

    /** @return array<string, mixed> the error's "data" object ([] when the server sent none) */
    public function getData(): array
    {
        return $this->data;
    }

    /** The Python exception class name (application errors), else null. */
    public function getType(): ?string
    {
        $type = $this->data['type'] ?? null;
        return is_string($type) ? $type : null;
    }
}
