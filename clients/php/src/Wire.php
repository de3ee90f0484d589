<?php

declare(strict_types=1);

namespace Ppy;

/**
 * The lines dialect (docs/protocol.md, section 3) as pure functions: PHP values in, bytes out, and back.
 *
 *     request:  {"jsonrpc":"2.0","method":"h.hello","params":[],"id":1}\n
 *     reply:    {"jsonrpc":"2.0","id":1,"result":"hello, world."}\n
 *     error:    {"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"...","data":{...}}}\n
 *
 * Requests are encoded exactly as the Python side encodes them (compact, key
 * order jsonrpc/method/params/id/timeout, UTF-8 unescaped), so both clients put
 * the same bytes on the wire; tests/vectors/*.json checks this.
 */
final class Wire
{
    /** Compact UTF-8 JSON like msgspec: no escaped slashes/unicode/U+2028, 1.0 stays 1.0. */
    public const ENCODE_FLAGS = JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_LINE_TERMINATORS
        | JSON_PRESERVE_ZERO_FRACTION | JSON_THROW_ON_ERROR;

    /** Replies may nest deeper than requests (the server caps requests at 64, not results). */
    public const DECODE_DEPTH = 4096;

    /**
     * Turn call() arguments into JSON-RPC params: a list is positional, string keys
     * (PHP named arguments) are keyword arguments.
     *
     * @param array<int|string, mixed> $args
     * @return array<int|string, mixed>|object
     */
    public static function params(array $args): array|object
    {
        if ($args === [] || array_is_list($args)) {
            return $args;
        }
        foreach ($args as $key => $_) {
            if (is_int($key)) {
                throw new \InvalidArgumentException(
                    'JSON-RPC passes arguments either by position or by name, not both: '
                    . 'use only positional or only named arguments'
                );
            }
        }
        return $args;
    }

    /**
     * One request object, without the trailing newline.
     *
     * @param array<int|string, mixed>|object $params a list (positional) or an associative array/object (named)
     * @param int|string|null $id null with $notify=true makes a notification (no "id" member at all)
     */
    public static function encodeRequest(
        string $method,
        array|object $params,
        int|string|null $id,
        bool $notify = false,
        ?float $timeout = null
    ): string {
        $request = ['jsonrpc' => '2.0', 'method' => $method, 'params' => $params];
        if (!$notify) {
            $request['id'] = $id;
        }
        if ($timeout !== null) {
            $request['timeout'] = $timeout;
        }
        return self::encode($request);
    }

    /** @param array<int|string, mixed>|object|string|int|float|bool|null $value */
    public static function encode(mixed $value): string
    {
        try {
            return json_encode($value, self::ENCODE_FLAGS);
        } catch (\JsonException $e) {
            throw new \InvalidArgumentException(
                'cannot encode the arguments as JSON (' . $e->getMessage() . '); pass UTF-8 strings '
                . '(base64_encode() binary data), finite numbers, arrays and objects',
                0,
                $e,
            );
        }
    }

    /**
     * Decode one reply line (an object, or an array for a batch) into PHP arrays.
     *
     * @return array<int|string, mixed>
     */
    public static function decodeReply(string $line): array
    {
        try {
            $reply = json_decode($line, true, self::DECODE_DEPTH, JSON_THROW_ON_ERROR);
        } catch (\JsonException $e) {
            throw new ProtocolException(
                'the server sent a reply that is not JSON (' . $e->getMessage() . '): '
                . self::preview($line) . '; is this address a ppy server?',
                0,
                $e,
            );
        }
        if (!is_array($reply)) {
            throw new ProtocolException('the server sent a reply that is not a JSON-RPC response: '
                . self::preview($line));
        }
        return $reply;
    }

    /**
     * The result of one decoded response object, or its error thrown as a RemoteException.
     *
     * @param array<int|string, mixed> $reply
     */
    public static function resultOf(array $reply): mixed
    {
        if (array_key_exists('result', $reply)) {
            return $reply['result'];
        }
        if (array_key_exists('error', $reply)) {
            throw RemoteException::fromError($reply['error']);
        }
        throw new ProtocolException('the server sent a response with neither "result" nor "error": '
            . self::preview(json_encode($reply, JSON_PARTIAL_OUTPUT_ON_ERROR) ?: ''));
    }

    /** The start of some bytes, safe to put in a message. */
    public static function preview(string $bytes, int $max = 120): string
    {
        $head = strlen($bytes) > $max ? substr($bytes, 0, $max) . '...' : $bytes;
        return json_encode($head, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_INVALID_UTF8_SUBSTITUTE)
            ?: '""';
    }
}
