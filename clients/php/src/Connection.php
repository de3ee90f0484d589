<?php

declare(strict_types=1);

namespace Ppy;

/**
 * One (usually persistent) socket to a ppy server, speaking the lines dialect: connect,
 * check it is idle before each request, authenticate, write a line, read the matching reply.
 *
 * Restarts: a refused connect (nothing was sent, the call never ran) is retried with a short
 * back-off until connect_timeout. A server that hands over to a successor first sends the
 * notification rpc.goaway and answers every request that reaches it; after it, the next call goes
 * to a fresh connection, and a call on a reused connection closed with no reply byte after
 * rpc.goaway (so the server never read it) is sent once more on a fresh connection.
 *
 * @internal Ppy\Client is the API; clones of a Client share one Connection.
 */
final class Connection
{
    /** What stream_socket_client() is given: tcp://host:port, tls://host:port[/identity] or unix:///path. */
    private string $address;
    private bool $tcp;
    /** @var array<string, mixed>|null ssl context options for tls://, null for the others */
    private ?array $ssl = null;

    /** The ssl context options a 'tls' option may set (others are refused, so a typo cannot turn checks off). */
    private const TLS_OPTIONS = ['cafile', 'capath', 'local_cert', 'local_pk', 'passphrase', 'peer_name',
        'verify_peer', 'verify_peer_name', 'allow_self_signed', 'verify_depth', 'ciphers', 'security_level'];
    /** @var resource|null */
    private $sock = null;
    /** The server said rpc.goaway on this socket: answered calls stay answered, new ones go elsewhere. */
    private bool $goaway = false;
    /** The socket may have carried requests before the one being sent (reused or persistent). */
    private bool $reused = false;

    /** First pause after a refused connect (seconds); it doubles up to REFUSED_MAX_PAUSE. */
    private const REFUSED_FIRST_PAUSE = 0.01;
    private const REFUSED_MAX_PAUSE = 0.2;
    private const ECONNREFUSED = 111;
    private const ENOENT = 2;

    /** Request ids, unique within this PHP request (random start: see nextId()). */
    private static int $lastId = 0;
    /** @var array<int, true> ids of the socket resources authenticated during this PHP request */
    private static array $authed = [];

    /** @param array<string, mixed> $tls ssl context options for a tls:// URI */
    public function __construct(
        private string $uri,
        private float $connectTimeout,
        private bool $persistent,
        private ?string $token,
        array $tls = []
    ) {
        [$this->address, $this->tcp] = self::parseUri($uri);
        if (str_starts_with($this->address, 'tls://')) {
            $this->ssl = self::sslOptions($tls);
            // A persistent socket is found again by its address string alone, so the address carries the TLS
            // identity: a client with other certificates or checks never gets a socket verified for another.
            // PHP reads the port up to the first non-digit, so the suffix does not change where it connects.
            $this->address .= '/' . substr(hash('sha256', serialize($this->ssl)), 0, 16);
        } elseif ($tls !== []) {
            throw new \InvalidArgumentException("option 'tls' applies to tls://host:port addresses, not '$uri'");
        }
    }

    /**
     * The 'tls' option as ssl context options: certificate and host name verified unless turned off,
     * TLS 1.2 or 1.3 only.
     *
     * @param array<string, mixed> $tls
     * @return array<string, mixed>
     */
    private static function sslOptions(array $tls): array
    {
        foreach ($tls as $name => $value) {
            if (!in_array($name, self::TLS_OPTIONS, true)) {
                throw new \InvalidArgumentException("unknown 'tls' option '$name'; known: "
                    . implode(', ', self::TLS_OPTIONS));
            }
        }
        foreach (['cafile', 'local_cert', 'local_pk'] as $file) {
            if (isset($tls[$file]) && (!is_string($tls[$file]) || !is_readable($tls[$file]))) {
                throw new \InvalidArgumentException("'tls' option '$file' must name a readable PEM file, got "
                    . var_export($tls[$file], true));
            }
        }
        return $tls + [
            'verify_peer' => true,
            'verify_peer_name' => true,
            'crypto_method' => STREAM_CRYPTO_METHOD_TLSv1_2_CLIENT | STREAM_CRYPTO_METHOD_TLSv1_3_CLIENT,
            'disable_compression' => true,
        ];
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
        $goneAwayRetried = false;
        for ($attempt = 1;; $attempt++) {
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
                if ($reply === null) {
                    // Closed with no reply byte after rpc.goaway: the server never read it. Once more, anew.
                    $this->close();
                    if (!$goneAwayRetried) {
                        $goneAwayRetried = true;
                        $attempt = 0;
                        continue;
                    }
                    throw new ConnectionException("{$this->uri} closed the connection before replying "
                        . '(server restarting?); the call did not run');
                }
            } catch (\Throwable $e) {
                $this->close();
                throw $e;
            }
            if ($this->goaway) {
                $this->close(); // the server hands over: the next call opens a fresh connection
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
                $reply = Wire::decodeReply($this->streamLine($sock, microtime(true) + $wait));
                $method = $reply['method'] ?? null;
                if ($method === 'rpc.item') {
                    $params = $reply['params'] ?? null;
                    if (is_array($params) && ($params['id'] ?? null) === $id) {
                        yield $params['item'] ?? null;
                    }
                    continue;
                }
                if ($method === 'rpc.goaway') {
                    $this->goaway = true; // the stream goes on; the next call takes a fresh connection
                    continue;
                }
                $rid = $reply['id'] ?? null;
                if ($rid === $id || ($rid === null && isset($reply['error']) && $method === null)) {
                    $done = true;
                    if ($this->goaway) {
                        $this->close();
                    }
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
                $reply = Wire::decodeReply($this->streamLine($sock, $deadline));
                if (($reply['id'] ?? null) === $id) {
                    if ($this->goaway) {
                        $this->close();
                    }
                    return;
                }
            }
        } catch (\Throwable) {
            $this->close();  // unsure where the stream's lines end: a fresh connection next time
        }
    }

    /**
     * One line of a stream; a close with no byte (even after rpc.goaway) breaks it: it had started.
     *
     * @param resource $sock
     */
    private function streamLine($sock, float $deadline): string
    {
        $line = $this->readLine($sock, $deadline);
        if ($line === null) {
            throw new ConnectionException("{$this->uri} closed the connection in the middle of a stream "
                . '(server restarting?); the items already received are all there are');
        }
        return $line;
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
            $this->reused = true;
            return $sock;
        }
        $this->close();
        $sock = $this->connect();
        $this->reused = $this->persistent; // a persistent socket may come from an earlier PHP request
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
        $options = $this->tcp ? ['socket' => ['tcp_nodelay' => true]] : [];
        if ($this->ssl !== null) {
            $options['ssl'] = $this->ssl;
        }
        $context = $options !== [] ? stream_context_create($options) : null;
        $sock = self::open(
            $this->address,
            $this->connectTimeout,
            $flags,
            $context,
            $this->uri,
            'is `ppy serve` running there?'
        );
        $this->sock = $sock;
        $this->goaway = false;
        return $sock;
    }

    /**
     * stream_socket_client(), retrying a refused connect (ECONNREFUSED, or ENOENT for a Unix socket: no
     * server listens yet, nothing was sent) with a short back-off; $connectTimeout bounds it all.
     *
     * The failed attempt's warnings are caught by a temporary error handler rather than `@`, so that
     * an application's own error handler (which may ignore error_reporting()) never sees them; over
     * TLS they carry OpenSSL's reason, which the exception repeats.
     *
     * @param resource|null $context
     * @return resource
     * @internal also used by Ppy\Legacy (ppy_exchange())
     */
    public static function open(
        string $address,
        float $connectTimeout,
        int $flags,
        $context,
        string $uri,
        string $hint
    ) {
        $deadline = microtime(true) + $connectTimeout;
        $pause = self::REFUSED_FIRST_PAUSE;
        while (true) {
            $errno = 0;
            $errstr = '';
            $warnings = [];
            $left = max(0.001, $deadline - microtime(true));
            set_error_handler(static function (int $no, string $message) use (&$warnings): bool {
                $warnings[] = preg_replace('/^stream_socket_client\(\): /', '', $message);
                return true;
            });
            try {
                $sock = $context === null
                    ? stream_socket_client($address, $errno, $errstr, $left, $flags)
                    : stream_socket_client($address, $errno, $errstr, $left, $flags, $context);
            } finally {
                restore_error_handler();
            }
            if ($sock !== false) {
                return $sock;
            }
            $refused = $errno === self::ECONNREFUSED || $errno === self::ENOENT
                || stripos($errstr, 'refused') !== false || stripos($errstr, 'No such file') !== false;
            $left = $deadline - microtime(true);
            if ($refused && $left > 0) {
                usleep((int) (min($pause, $left) * 1e6));
                $pause = min($pause * 2, self::REFUSED_MAX_PAUSE);
                continue;
            }
            $timedOut = $errno === 110 || stripos($errstr, 'timed out') !== false;
            if (!$timedOut && !$refused && str_starts_with($address, 'tls://') && $warnings !== []) {
                $reason = str_replace(["\n", $address], [' ', $uri], implode('; ', $warnings));
                throw new ConnectionException("TLS connection to $uri failed: $reason; check the 'tls' option: "
                    . 'cafile must be the CA that signed the server\'s certificate, the host must be a name in it '
                    . '(or set peer_name), and a server with --tls-client-ca needs local_cert/local_pk');
            }
            if ($timedOut) {
                throw new ClientTimeoutException("connecting to $uri took over $connectTimeout s "
                    . "(connect_timeout); check the address and that the server is not overloaded");
            }
            $again = $refused ? " (retried for $connectTimeout s, connect_timeout)" : '';
            throw new ConnectionException("cannot connect to $uri: " . ($errstr ?: "error $errno") . "$again; $hint");
        }
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
            $reply = $this->readReply($sock, $id, $deadline);
            if ($reply === null) {
                throw new ConnectionException("{$this->uri} closed the connection while authenticating "
                    . '(server restarting?); try again');
            }
            Wire::resultOf($reply);
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
                    throw new ClientTimeoutException("could not send the request to {$this->uri} within the timeout: "
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
     * Null: the connection closed with no reply byte after rpc.goaway (the request never ran).
     *
     * @param resource $sock
     * @param int|list<int> $want
     * @return array<int|string, mixed>|null
     */
    private function readReply($sock, int|array $want, float $deadline): ?array
    {
        while (true) {
            $line = $this->readLine($sock, $deadline);
            if ($line === null) {
                return null;
            }
            $reply = Wire::decodeReply($line);
            if (isset($reply['method']) && !array_key_exists('id', $reply)) {
                // A notification from the server, not a reply: rpc.goaway says it hands over.
                if ($reply['method'] === 'rpc.goaway') {
                    $this->goaway = true;
                }
                continue;
            }
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
     * One whole line, however the bytes arrive; never a truncated one. Null: closed with no byte after
     * rpc.goaway on a reused connection (the server never read the request: safe to send again).
     *
     * @param resource $sock
     */
    private function readLine($sock, float $deadline): ?string
    {
        $line = @fgets($sock);
        if ($line !== false && $line[-1] === "\n") {
            return $line;
        }
        $buffer = $line === false ? '' : $line;
        while (true) {
            if (feof($sock)) {
                if ($buffer === '' && $this->goaway && $this->reused) {
                    return null;
                }
                throw new ConnectionException("{$this->uri} closed the connection before replying "
                    . ($buffer === '' ? '' : 'completely ') . '(server restarting or stopped?'
                    . ($this->ssl !== null ? ', or, over TLS, a client certificate refused by --tls-client-ca' : '')
                    . '); the call may or may not have run');
            }
            $left = $deadline - microtime(true);
            if ($left <= 0) {
                throw new ClientTimeoutException("no reply from {$this->uri} within the timeout; the call may still "
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
        if (str_starts_with($uri, 'tcp://') || str_starts_with($uri, 'tls://')) {
            $scheme = substr($uri, 0, 3);
            $parts = parse_url($uri);
            if (
                $parts === false || !isset($parts['host']) || isset($parts['path']) || isset($parts['query'])
                || ($scheme === 'tls' && !isset($parts['port']))
            ) {
                throw new \InvalidArgumentException("'$uri' is not a valid address; use $scheme://host:port, e.g. "
                    . ($scheme === 'tls' ? 'tls://10.0.0.5:32443 (the server\'s --tls-port)' : Client::DEFAULT_URI));
            }
            $port = $parts['port'] ?? Client::DEFAULT_PORT;
            return ["$scheme://{$parts['host']}:$port", true];
        }
        throw new \InvalidArgumentException("unsupported address '$uri': use tcp://host:port, tls://host:port or "
            . 'unix:///path');
    }
}
