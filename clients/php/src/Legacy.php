<?php

declare(strict_types=1);

namespace Ppy;

/**
 * The seed's legacy dialect (docs/protocol.md, section 2), behind ppy_exchange(): one connection per call.
 *
 *     offset  size  content
 *     0       11    payload length in bytes, '.', '0' padding:  39.00000000
 *     11      N     UTF-8 JSON: {"entry": "h", "func": "hello", "param": []}
 *
 * The reply has the same framing around {"data": ..., "error": ""}; the server
 * closes the connection after it. Unlike the seed's exchange(), the reply is read
 * to exactly the announced length (the seed read 1024-byte chunks and could cut
 * replies short), every wait is bounded, and failures throw instead of die().
 */
final class Legacy
{
    public const HEADER_SIZE = 11;

    /** The seed's frame: header + payload. */
    public static function encodeFrame(string $payload): string
    {
        $head = strlen($payload) . '.';
        if (strlen($head) > self::HEADER_SIZE) {
            throw new \InvalidArgumentException('payload of ' . strlen($payload)
                . ' bytes does not fit an 11-byte legacy header; send less data');
        }
        return str_pad($head, self::HEADER_SIZE, '0') . $payload;
    }

    /** The payload length an 11-byte header announces, or a ProtocolException. */
    public static function parseHeader(string $header): int
    {
        if (strlen($header) !== self::HEADER_SIZE || !preg_match('/\A[0-9]{1,10}\.[0-9]*\z/', $header)) {
            throw new ProtocolException('bad legacy reply header ' . Wire::preview($header)
                . ": expected 11 bytes like '39.00000000'; is this address a ppy (or seed) server?");
        }
        return (int) substr($header, 0, strpos($header, '.'));
    }

    /**
     * The payload the seed's exchange() sent: json_encode() with PHP's default flags,
     * so the bytes on the wire are the seed's own.
     *
     * @param array<int|string, mixed> $param
     */
    public static function encodePayload(
        string $entry,
        string $func,
        array $param,
        ?string $token = null,
        ?float $timeout = null
    ): string {
        $request = ['entry' => $entry, 'func' => $func, 'param' => $param];
        if ($token !== null) {
            $request['token'] = $token;
        }
        if ($timeout !== null) {
            $request['timeout'] = $timeout;
        }
        try {
            return json_encode($request, JSON_THROW_ON_ERROR);
        } catch (\JsonException $e) {
            throw new \InvalidArgumentException('cannot encode the parameters as JSON (' . $e->getMessage()
                . '); pass UTF-8 strings, finite numbers and arrays', 0, $e);
        }
    }

    /**
     * One call: connect, send the frame, read exactly the announced reply, close.
     *
     * @return string the reply payload, e.g. {"data": "hello, world.", "error": ""}
     */
    public static function exchange(string $address, string $frame, float $timeout, float $connectTimeout): string
    {
        // A refused connect (a restart's gap) is retried until $connectTimeout: nothing was sent yet.
        $sock = Connection::open(
            $address,
            $connectTimeout,
            STREAM_CLIENT_CONNECT,
            null,
            $address,
            'is `ppy serve` running there? (set PPY_HOST / PPY_PORT)'
        );
        try {
            $deadline = microtime(true) + $timeout;
            stream_set_timeout($sock, (int) $timeout, (int) (fmod($timeout, 1.0) * 1e6));
            $sent = @fwrite($sock, $frame);
            if ($sent !== strlen($frame)) {
                self::writeRest($sock, $frame, (int) $sent, $address, $deadline);
            }
            $size = self::parseHeader(self::readExactly($sock, self::HEADER_SIZE, $address, $deadline));
            return $size === 0 ? '' : self::readExactly($sock, $size, $address, $deadline);
        } finally {
            fclose($sock);
        }
    }

    /** @param resource $sock */
    private static function writeRest($sock, string $frame, int $done, string $address, float $deadline): void
    {
        while ($done < strlen($frame)) {
            if (microtime(true) >= $deadline || stream_get_meta_data($sock)['timed_out']) {
                throw new ClientTimeoutException("could not send the request to $address within the timeout");
            }
            $written = @fwrite($sock, substr($frame, $done));
            if ($written === false || ($written === 0 && feof($sock))) {
                throw new ConnectionException("the connection to $address broke while sending the request");
            }
            $done += $written;
        }
    }

    /**
     * Exactly $size bytes, however they are split across reads.
     *
     * @param resource $sock
     */
    private static function readExactly($sock, int $size, string $address, float $deadline): string
    {
        $data = (string) @stream_get_contents($sock, $size);
        while (strlen($data) < $size) {
            if (feof($sock)) {
                throw new ConnectionException("$address closed the connection after " . strlen($data)
                    . " of $size bytes; the reply is incomplete (server stopped?)");
            }
            $left = $deadline - microtime(true);
            if ($left <= 0) {
                throw new ClientTimeoutException("no complete reply from $address within the timeout; the call may "
                    . 'still be running: pass a larger timeout or make the function faster');
            }
            stream_set_timeout($sock, (int) $left, (int) (fmod($left, 1.0) * 1e6));
            $data .= (string) @stream_get_contents($sock, $size - strlen($data));
        }
        return $data;
    }
}
