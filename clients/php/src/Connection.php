<?php

declare(strict_types=1);

namespace Ppy;

/**
 * One (usually persistent) socket to a ppy server, speaking the lines dialect: connect,
 * check it is idle before each request, authenticate, write a line, read the matching reply.
 *
 * @internal Ppy\Client is the API; clones of a Client share one Connection.
 */
final class Connection
{
    /** What stream_socket_client() is given: tcp://host:port or unix:///path. */
    private string $address;
    private bool $tcp;
    /** @var resource|null */
    private $sock = null;

    /** Request ids, unique within this PHP request (random start: see nextId()). */
    private static int $lastId = 0;
    /** @var array<int, true> ids of the socket resources authenticated during this PHP request */
    private static array $authed = [];

    public function __construct(private string $uri, private float $connectTimeout, private bool $persistent,
                                private ?string $token)
    {
        [$this->address, $this->tcp] = self::parseUri($uri);
    }

    /**
     * Send one line and read the reply for $want (an id, a list of batch ids, or null: no reply expected).
     *
     * @param int|list<int>|null $want
     * @return array<int|string, mixed>
     */
    public function roundtrip(string $line, int|array|null $want, float $wait): array
    {
        $deadline = microtime(true) + $wait;
        for ($attempt = 1; ; $attempt++) {
            $sock = $this->socket($wait);
            try {
                if (!$this->write($sock, $line, $deadline)) {
                    // The connection died before any byte of this request left: safe to send it again.
                    $this->close();
                    if ($attempt === 1) {
                        continue;
                    }
                    throw new ConnectionException("the connection to {$this->uri} broke before the request "
                        . 'could be sent; is `ppy serve` running?');
                }
                if ($want === null) {
                    return [];
                }
                $reply = $this->readReply($sock, $want, $deadline);
            } catch (\Throwable $e) {
                $this->close();
                throw $e;
            }
            if (isset($reply['error']) && !isset($reply['id'])) {
                // Not about one request: refused connection, oversized line, rejected batch.
                $this->close();
                throw RemoteException::fromError($reply['error']);
            }
            return $reply;
        }
    }

    /**
     * Send a streaming request and yield the items of stream $id as the server sends them; the
     * generator returns the call's result (the Python generator's return value).
     *
     * Leaving early (break out of the foreach, or dropping the Generator) runs the finally block:
     * it sends rpc.cancel and reads, dropping them, the stream's remaining lines up to its one
     * response, so the connection is idle and usable again. If that cannot finish within $wait,
     * the connection is closed instead.
     *
     * @return \Generator<int, mixed, mixed, mixed>
     */
    public function stream(string $line, int $id, float $wait): \Generator
    {
        $sock = $this->socket($wait);
        $done = false;
        try {
            if (!$this->write($sock, $line, microtime(true) + $wait)) {
                throw new ConnectionException("the connection to {$this->uri} broke before the request "
                    . 'could be sent; is `ppy serve` running?');
            }
            while (true) {
                $reply = Wire::decodeReply($this->readLine($sock, microtime(true) + $wait));
                if (($reply['method'] ?? null) === 'rpc.item') {
                    $params = $reply['params'] ?? null;
                    if (is_array($params) && ($params['id'] ?? null) === $id) {
                        yield $params['item'] ?? null;
                    }
                    continue;
                }
                $rid = $reply['id'] ?? null;
                if ($rid === $id || ($rid === null && isset($reply['error']) && !isset($reply['method']))) {
                    $done = true;
                    return Wire::resultOf($reply);
                }
            }
        } finally {
            if (!$done) {
                $this->cancel($id, $wait);
            }
        }
    }

    /** Stop stream $id on the server and read up to its response, so the socket is clean again. */
    private function cancel(int $id, float $wait): void
    {
        $sock = $this->sock;
        if ($sock === null || !is_resource($sock)) {
            return;
        }
        $deadline = microtime(true) + $wait;
        try {
            $cancel = Wire::encodeRequest('rpc.cancel', ['id' => $id], null, true) . "\n";
            if (!$this->write($sock, $cancel, $deadline)) {
                $this->close();
                return;
            }
            while (true) {
                $reply = Wire::decodeReply($this->readLine($sock, $deadline));
                if (($reply['id'] ?? null) === $id) {
                    return;
                }
            }
        } catch (\Throwable) {
            $this->close();  // unsure where the stream's lines end: a fresh connection next time
        }
    }

    /**
     * A connected, idle (and authenticated) socket.
     *
     * @return resource
     */
    private function socket(float $wait)
    {
        $sock = $this->sock;
        if ($sock !== null && is_resource($sock) && self::idle($sock)) {
            return $sock;
        }
        $this->close();
        $sock = $this->connect();
        if (!self::idle($sock)) {
            // A persistent socket left over from an earlier PHP request, with stray bytes or closed.
            $this->close();
            $sock = $this->connect();
        }
        if ($this->token !== null && !isset(self::$authed[(int) $sock])) {
            $this->authenticate($sock, $wait);
        }
        return $sock;
    }

    /**
     * Nothing to read on a socket we are about to send on: the server has not closed it
     * and no stray reply waits in it. One poll(2) with a zero timeout.
     *
     * @param resource $sock
     */
    private static function idle($sock): bool
    {
        $read = [$sock];
        $write = $except = null;
        return @stream_select($read, $write, $except, 0) === 0;
    }

    /** @return resource */
    private function connect()
    {
        $flags = STREAM_CLIENT_CONNECT | ($this->persistent ? STREAM_CLIENT_PERSISTENT : 0);
        $context = $this->tcp ? stream_context_create(['socket' => ['tcp_nodelay' => true]]) : null;
        $errno = 0;
        $errstr = '';
        $sock = @stream_socket_client($this->address, $errno, $errstr, $this->connectTimeout, $flags, $context);
        if ($sock === false) {
            if ($errno === 110 || stripos($errstr, 'timed out') !== false) {
                throw new TimeoutException("connecting to {$this->uri} took over {$this->connectTimeout} s "
                    . "(connect_timeout); check the address and that the server is not overloaded");
            }
            throw new ConnectionException("cannot connect to {$this->uri}: " . ($errstr ?: "error $errno")
                . '; is `ppy serve` running there?');
        }
        $this->sock = $sock;
        return $sock;
    }

    /** @param resource $sock */
    private function authenticate($sock, float $wait): void
    {
        $id = self::nextId();
        $deadline = microtime(true) + $wait;
        try {
            if (!$this->write($sock, Wire::encodeRequest('rpc.auth', [$this->token], $id) . "\n", $deadline)) {
                throw new ConnectionException("the connection to {$this->uri} broke while authenticating");
            }
            Wire::resultOf($this->readReply($sock, $id, $deadline));
        } catch (\Throwable $e) {
            $this->close();
            throw $e;
        }
        self::$authed[(int) $sock] = true;
    }

    /**
     * Write all of $data. False when the connection was already broken and nothing was sent.
     *
     * @param resource $sock
     */
    private function write($sock, string $data, float $deadline): bool
    {
        $left = $deadline - microtime(true);
        stream_set_timeout($sock, (int) $left, (int) (fmod($left, 1.0) * 1e6));
        $written = @fwrite($sock, $data);
        if ($written === strlen($data)) {
            return true;
        }
        $done = 0;
        // Partial writes happen with large requests; each round waits at most the time left.
        while (true) {
            if ($written === false || $written === 0) {
                if (stream_get_meta_data($sock)['timed_out'] || microtime(true) >= $deadline) {
                    throw new TimeoutException("could not send the request to {$this->uri} within the timeout: "
                        . 'the server is not reading (overloaded?)');
                }
                if ($done === 0) {
                    return false;
                }
                throw new ConnectionException("the connection to {$this->uri} broke while sending the request");
            }
            $done += $written;
            if ($done >= strlen($data)) {
                return true;
            }
            $written = @fwrite($sock, substr($data, $done));
        }
    }

    /**
     * Read lines until the reply for $want; replies for other ids (stale) are skipped.
     *
     * @param resource $sock
     * @param int|list<int> $want
     * @return array<int|string, mixed>
     */
    private function readReply($sock, int|array $want, float $deadline): array
    {
        while (true) {
            $reply = Wire::decodeReply($this->readLine($sock, $deadline));
            if (is_int($want)) {
                $id = $reply['id'] ?? null;
                if ($id === $want || ($id === null && isset($reply['error']))) {
                    return $reply;
                }
            } elseif (array_is_list($reply)) {
                foreach ($reply as $item) {
                    if (is_array($item) && in_array($item['id'] ?? null, $want, true)) {
                        return $reply;
                    }
                }
            } elseif (($reply['id'] ?? null) === null && isset($reply['error'])) {
                return $reply;
            }
        }
    }

    /**
     * One whole line, however the bytes arrive; never a truncated one.
     *
     * @param resource $sock
     */
    private function readLine($sock, float $deadline): string
    {
        $line = @fgets($sock);
        if ($line !== false && $line[-1] === "\n") {
            return $line;
        }
        $buffer = $line === false ? '' : $line;
        while (true) {
            if (feof($sock)) {
                throw new ConnectionException("{$this->uri} closed the connection before replying "
                    . ($buffer === '' ? '' : 'completely ') . '(server restarting or stopped?); '
                    . 'the call may or may not have run');
            }
            $left = $deadline - microtime(true);
            if ($left <= 0) {
                throw new TimeoutException("no reply from {$this->uri} within the timeout; the call may still "
                    . "be running on the server: raise the client's 'timeout' option or make the function faster");
            }
            stream_set_timeout($sock, (int) $left, (int) (fmod($left, 1.0) * 1e6));
            $more = @fgets($sock);
            if ($more !== false) {
                $buffer .= $more;
                if ($buffer[-1] === "\n") {
                    return $buffer;
                }
            }
        }
    }

    /** Close the socket. For a persistent one this closes it for the whole PHP process. */
    public function close(): void
    {
        $sock = $this->sock;
        $this->sock = null;
        if ($sock !== null) {
            unset(self::$authed[(int) $sock]);
            if (is_resource($sock)) {
                @fclose($sock);
            }
        }
    }

    public function isPersistent(): bool
    {
        return $this->persistent;
    }

    public static function nextId(): int
    {
        // A random start per PHP request: a persistent socket may still carry a reply to a request of an
        // earlier PHP request, and its id must not be mistaken for one of ours.
        if (self::$lastId === 0) {
            self::$lastId = random_int(1, 1 << 40);
        }
        return ++self::$lastId;
    }

    /** @return array{0: string, 1: bool} [stream_socket_client address, is TCP] */
    private static function parseUri(string $uri): array
    {
        if (str_starts_with($uri, 'unix://')) {
            if (strlen($uri) <= 7) {
                throw new \InvalidArgumentException("'$uri' has no socket path; use unix:///path/to/ppy.sock");
            }
            return [$uri, false];
        }
        if (str_starts_with($uri, 'tcp://')) {
            $parts = parse_url($uri);
            if ($parts === false || !isset($parts['host']) || isset($parts['path']) || isset($parts['query'])) {
                throw new \InvalidArgumentException("'$uri' is not a valid address; use tcp://host:port, e.g. "
                    . Client::DEFAULT_URI);
            }
            $port = $parts['port'] ?? Client::DEFAULT_PORT;
            return ["tcp://{$parts['host']}:$port", true];
        }
        throw new \InvalidArgumentException("unsupported address '$uri': use tcp://host:port or unix:///path");
    }
}
