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

    private const OPTIONS = ['timeout', 'connect_timeout', 'persistent', 'token', 'tls'];

    private string $uri;
    private Connection $connection;
    private float $timeout = 30.0;
    /** The deadline sent with each call ("timeout" member) when the caller chose one. */
    private ?float $sentTimeout = null;

    /**
     * @param string $uri 'tcp://host:port' (IPv6: 'tcp://[::1]:32123'), 'tls://host:port' (the server's
     *        --tls-port) or 'unix:///path/to/ppy.sock'
     * @param array{timeout?: int|float, connect_timeout?: int|float, persistent?: bool, token?: string|null,
     *        tls?: array<string, mixed>} $options
     *        timeout: seconds to wait for each reply (default 30; when given it is also sent to the server
     *        as the call's deadline); connect_timeout: seconds to connect (default 5);
     *        persistent: reuse one socket across PHP-FPM requests (default true);
     *        token: the server's token (--token-file), sent once per connection with rpc.auth;
     *        tls: for tls:// only, PHP ssl context options: cafile (the CA that signed the server's
     *        certificate; default: the system's CAs), local_cert and local_pk (a client certificate for a
     *        server with --tls-client-ca), peer_name (the name to verify, default the URI's host),
     *        verify_peer / verify_peer_name (default true: leave them on outside tests).
     */
    public function __construct(string $uri = self::DEFAULT_URI, array $options = [])
    {
        $this->uri = $uri;
        foreach ($options as $name => $value) {
            if (!in_array($name, self::OPTIONS, true)) {
                throw new \InvalidArgumentException("unknown option '$name' for Ppy\\Client; known options: "
                    . implode(', ', self::OPTIONS));
            }
        }
        if (array_key_exists('timeout', $options)) {
            $this->timeout = $this->sentTimeout = self::seconds('timeout', $options['timeout']);
        }
        $connectTimeout = 5.0;
        if (array_key_exists('connect_timeout', $options)) {
            $connectTimeout = self::seconds('connect_timeout', $options['connect_timeout']);
        }
        $persistent = $options['persistent'] ?? true;
        if (!is_bool($persistent)) {
            throw new \InvalidArgumentException("option 'persistent' must be true or false");
        }
        $token = $options['token'] ?? null;
        if ($token !== null && (!is_string($token) || $token === '')) {
            throw new \InvalidArgumentException("option 'token' must be a non-empty string (the server's "
                . '--token-file contents) or null');
        }
        $tls = $options['tls'] ?? [];
        if (!is_array($tls)) {
            throw new \InvalidArgumentException("option 'tls' must be an array of ssl context options, e.g. "
                . "['cafile' => '/etc/ppy/ca.pem']");
        }
        $this->connection = new Connection($uri, $connectTimeout, $persistent, $token, $tls);
    }

    // -- calls -------------------------------------------------------------------------------------

    /**
     * Call "entry.func" and return its result. Positional arguments go as a JSON array,
     * PHP named arguments as a JSON object (Python keyword arguments); do not mix them.
     *
     * @throws PpyException RemoteException subclasses for errors the server reports,
     *                   ConnectionException / TimeoutException (an interface) for transport failures
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
        $id = Connection::nextId();
        $line = Wire::encodeRequest($method, $params, $id, false, $sent) . "\n";
        $reply = $this->connection->roundtrip($line, $id, ($sent ?? $this->timeout) + self::GRACE);
        if (array_key_exists('result', $reply)) {
            return $reply['result'];
        }
        return Wire::resultOf($reply);
    }

    /**
     * Stream the items of a Python generator function as they are produced:
     *
     *     foreach ($ppy->stream('llm.tokens', prompt: $q) as $token) {
     *         echo $token;
     *         flush();
     *     }
     *
     * The Generator's getReturn() is the Python generator's return value. Leaving the foreach
     * early cancels the stream on the server (its generator is closed) and leaves the connection
     * usable. A function that is not a generator yields nothing; its result is getReturn().
     * Consume or drop one stream before making other calls on the same client.
     *
     * @return \Generator<int, mixed, mixed, mixed>
     * @throws Exception as call() does, from the foreach
     */
    public function stream(string $method, mixed ...$args): \Generator
    {
        return $this->streamRequest($method, Wire::params($args));
    }

    /**
     * stream() with the params given as one array or object, and an optional deadline for the
     * whole stream (the client's 'timeout' option otherwise bounds the wait for each item).
     *
     * @param array<int|string, mixed>|object $params
     * @return \Generator<int, mixed, mixed, mixed>
     */
    public function streamRequest(string $method, array|object $params = [], int|float|null $timeout = null): \Generator
    {
        $sent = $timeout === null ? $this->sentTimeout : self::seconds('timeout', $timeout);
        $id = Connection::nextId();
        $request = ['jsonrpc' => '2.0', 'method' => $method, 'params' => $params, 'id' => $id, 'stream' => true];
        if ($sent !== null) {
            $request['timeout'] = $sent;
        }
        return $this->connection->stream(Wire::encode($request) . "\n", $id, $this->timeout + self::GRACE);
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
        $this->connection->roundtrip(
            Wire::encodeRequest($method, $params, null, true, $this->sentTimeout) . "\n",
            null,
            $this->timeout
        );
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
        return new Proxy(
            fn (string $method, array $args): mixed => $this->request($method, Wire::params($args)),
            $name
        );
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
                $ids[] = $id = Connection::nextId();
                $parts[] = Wire::encodeRequest($method, $params, $id, false, $this->sentTimeout);
            }
        }
        $line = '[' . implode(',', $parts) . "]\n";
        if ($ids === []) {
            $this->connection->roundtrip($line, null, $this->timeout);
            return [];
        }
        $replies = $this->connection->roundtrip($line, $ids, ($this->sentTimeout ?? $this->timeout) + self::GRACE);
        $byId = [];
        foreach ($replies as $reply) {
            if (is_array($reply) && isset($reply['id']) && (is_int($reply['id']) || is_string($reply['id']))) {
                $byId[$reply['id']] = $reply;
            }
        }
        $results = [];
        foreach ($ids as $id) {
            if (!isset($byId[$id])) {
                $this->connection->close();
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
        $this->connection->close();
    }

    public function getUri(): string
    {
        return $this->uri;
    }

    public function __destruct()
    {
        if (!$this->connection->isPersistent()) {
            $this->connection->close();
        }
    }

    // -- helpers -----------------------------------------------------------------------------------

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
}
