<?php

declare(strict_types=1);

namespace Ppy;

/**
 * Call Python functions served by `ppy serve` over the lines dialect (JSON-RPC 2.0, one JSON per line).
 *
 *     $ppy = new Ppy\Client('tcp://127.0.0.1:32123');       // or 'unix:///run/ppy.sock'
 *     $ppy->call('h.hello');                                 // "hello, world."
 *     $ppy->call('h.greet', name: 'Zoë', times: 2);          // named arguments = keyword arguments
 *     $ppy->h->greet('Zoë');                                 // the same, as sugar
 *
 * Connections are persistent by default (STREAM_CLIENT_PERSISTENT): under PHP-FPM
 * one socket per worker process is reused by every request, so a call costs one
 * write and one read. Before each call the socket is checked without blocking:
 * a socket the server closed (restart, idle timeout) or that holds stray bytes
 * (a reply a previous request never read) is replaced before anything is sent.
 * Once a request is on the wire it is never re-sent, since the server may have
 * run it; the only retry is for a write that failed before any byte left.
 */
class Client
{
    public const DEFAULT_URI = 'tcp://127.0.0.1:32123';
    public const DEFAULT_PORT = 32123;

    /**
     * Seconds the client waits past the deadline it gave the server, so that the
     * server's own -32001 reply can arrive and the connection stays usable.
     */
    public const GRACE = 0.5;

    private const OPTIONS = ['timeout', 'connect_timeout', 'persistent', 'token'];

    private string $uri;
    /** What stream_socket_client() is given: tcp://host:port or unix:///path. */
    private string $address;
    private bool $tcp;
    private float $timeout = 30.0;
    /** The deadline sent with each call ("timeout" member) when the caller chose one. */
    private ?float $sentTimeout = null;
    private float $connectTimeout = 5.0;
    private bool $persistent = true;
    private ?string $token = null;
    /** @var resource|null */
    private $sock = null;

    /** Request ids, unique within this PHP request (random start: see nextId()). */
    private static int $lastId = 0;
    /** @var array<int, true> ids of the socket resources authenticated during this PHP request */
    private static array $authed = [];

    /**
     * @param string $uri 'tcp://host:port' (IPv6: 'tcp://[::1]:32123') or 'unix:///path/to/ppy.sock'
     * @param array{timeout?: int|float, connect_timeout?: int|float, persistent?: bool, token?: string|null} $options
     *        timeout: seconds to wait for each reply (default 30; when given it is also sent to the server
     *        as the call's deadline); connect_timeout: seconds to connect (default 5);
     *        persistent: reuse one socket across PHP-FPM requests (default true);
     *        token: the server's token (--token-file), sent once per connection with rpc.auth.
     */
    public function __construct(string $uri = self::DEFAULT_URI, array $options = [])
    {
        $this->uri = $uri;
        [$this->address, $this->tcp] = self::parseUri($uri);
        foreach ($options as $name => $value) {
            if (!in_array($name, self::OPTIONS, true)) {
                throw new \InvalidArgumentException("unknown option '$name' for Ppy\\Client; known options: "
                    . implode(', ', self::OPTIONS));
            }
        }
        if (array_key_exists('timeout', $options)) {
            $this->timeout = $this->sentTimeout = self::seconds('timeout', $options['timeout']);
        }
        if (array_key_exists('connect_timeout', $options)) {
            $this->connectTimeout = self::seconds('connect_timeout', $options['connect_timeout']);
        }
        if (array_key_exists('persistent', $options)) {
            if (!is_bool($options['persistent'])) {
                throw new \InvalidArgumentException("option 'persistent' must be true or false");
            }
            $this->persistent = $options['persistent'];
        }
        $token = $options['token'] ?? null;
        if ($token !== null && (!is_string($token) || $token === '')) {
            throw new \InvalidArgumentException("option 'token' must be a non-empty string (the server's "
                . '--token-file contents) or null');
        }
        $this->token = $token;
    }

    // -- calls -------------------------------------------------------------------------------------

    /**
     * Call "entry.func" and return its result. Positional arguments go as a JSON array,
     * PHP named arguments as a JSON object (Python keyword arguments); do not mix them.
     *
     * @throws Exception RemoteException subclasses for errors the server reports,
     *                   ConnectionException / TimeoutException for transport failures
     */
    public function call(string $method, mixed ...$args): mixed
    {
        return $this->request($method, Wire::params($args));
    }

    /**
     * call() with the params given as one array (list: positional, associative: named) or object,
     * and an optional deadline for this call only. Use it when an argument is named "method".
     *
     * @param array<int|string, mixed>|object $params
     */
    public function request(string $method, array|object $params = [], int|float|null $timeout = null): mixed
    {
        $sent = $timeout === null ? $this->sentTimeout : self::seconds('timeout', $timeout);
        $id = self::nextId();
        $line = Wire::encodeRequest($method, $params, $id, false, $sent) . "\n";
        $reply = $this->roundtrip($line, $id, ($sent ?? $this->timeout) + self::GRACE);
        if (array_key_exists('result', $reply)) {
            return $reply['result'];
        }
        return Wire::resultOf($reply);
    }

    /**
     * Send a notification: the server runs the call and sends nothing back, so
     * errors (even "method not found") are not reported. Returns once the bytes are sent.
     */
    public function notify(string $method, mixed ...$args): void
    {
        $this->sendNotification($method, Wire::params($args));
    }

    /** @param array<int|string, mixed>|object $params */
    public function sendNotification(string $method, array|object $params = []): void
    {
        self::checkNotification($method);
        $this->roundtrip(Wire::encodeRequest($method, $params, null, true, $this->sentTimeout) . "\n", null,
            $this->timeout);
    }

    /** Collect calls with ->call()/->notify() (or `$batch->h->hello()`), then ->send() them in one request. */
    public function batch(): Batch
    {
        return new Batch($this);
    }

    /** A copy of this client whose calls carry a deadline of $seconds (it shares the connection). */
    public function withTimeout(int|float $seconds): static
    {
        $clone = clone $this;
        $clone->timeout = $clone->sentTimeout = self::seconds('timeout', $seconds);
        return $clone;
    }

    /** `$client->h->hello()` and `$client->billing->invoice->total(...)`. */
    public function __get(string $name): Proxy
    {
        return new Proxy(fn (string $method, array $args): mixed => $this->request($method, Wire::params($args)),
            $name);
    }

    /**
     * Send a batch: one entry per call (notifications get none), in the order given; a call
     * that failed on the server has its RemoteException object in place of a result.
     *
     * @internal used by Batch::send()
     * @param list<array{0: string, 1: array<int|string, mixed>|object, 2: bool}> $calls [method, params, notify]
     * @return list<mixed>
     */
    public function sendBatch(array $calls): array
    {
        if ($calls === []) {
            return [];
        }
        $ids = [];
        $parts = [];
        foreach ($calls as [$method, $params, $notify]) {
            if ($notify) {
                self::checkNotification($method);
                $parts[] = Wire::encodeRequest($method, $params, null, true, $this->sentTimeout);
            } else {
                $ids[] = $id = self::nextId();
                $parts[] = Wire::encodeRequest($method, $params, $id, false, $this->sentTimeout);
            }
        }
        $line = '[' . implode(',', $parts) . "]\n";
        if ($ids === []) {
            $this->roundtrip($line, null, $this->timeout);
            return [];
        }
        $replies = $this->roundtrip($line, $ids, ($this->sentTimeout ?? $this->timeout) + self::GRACE);
        $byId = [];
        foreach ($replies as $reply) {
            if (is_array($reply) && isset($reply['id']) && (is_int($reply['id']) || is_string($reply['id']))) {
                $byId[$reply['id']] = $reply;
            }
        }
        $results = [];
        foreach ($ids as $id) {
            if (!isset($byId[$id])) {
                $this->close();
                throw new ProtocolException("the server's batch reply has no response for request id $id");
            }
            try {
                $results[] = Wire::resultOf($byId[$id]);
            } catch (RemoteException $e) {
                $results[] = $e;
            }
        }
        return $results;
    }

    /** Close the connection. For a persistent one this closes it for the whole PHP process. */
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

    public function getUri(): string
    {
        return $this->uri;
    }

    public function __destruct()
    {
        if (!$this->persistent) {
            $this->close();
        }
    }

    // -- transport ---------------------------------------------------------------------------------

    /**
     * Send one line and read the reply for $want (an id, a list of batch ids, or null: no reply expected).
     *
     * @param int|list<int>|null $want
     * @return array<int|string, mixed>
     */
    private function roundtrip(string $line, int|array|null $want, float $wait): array
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

    // -- helpers -----------------------------------------------------------------------------------

    private static function nextId(): int
    {
        // A random start per PHP request: a persistent socket may still carry a reply to a request of an
        // earlier PHP request, and its id must not be mistaken for one of ours.
        if (self::$lastId === 0) {
            self::$lastId = random_int(1, 1 << 40);
        }
        return ++self::$lastId;
    }

    private static function checkNotification(string $method): void
    {
        // The server answers an invalid notification with an id-less error line that no call
        // could claim; refuse it here instead.
        if ($method === '') {
            throw new \InvalidArgumentException('notify() needs a method name like "h.hello"');
        }
    }

    private static function seconds(string $name, mixed $value): float
    {
        if ((!is_int($value) && !is_float($value)) || !($value > 0) || !is_finite((float) $value)) {
            throw new \InvalidArgumentException("option '$name' must be a positive number of seconds, got "
                . var_export($value, true));
        }
        return (float) $value;
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
                    . self::DEFAULT_URI);
            }
            $port = $parts['port'] ?? self::DEFAULT_PORT;
            return ["tcp://{$parts['host']}:$port", true];
        }
        throw new \InvalidArgumentException("unsupported address '$uri': use tcp://host:port or unix:///path");
    }
}
