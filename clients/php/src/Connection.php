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
        $options = $this->tcp ? ['socket' => ['tcp_nodelay' => true]] : [];
        if ($this->ssl !== null) {
            $options['ssl'] = $this->ssl;
        }
        $context = $options !== [] ? stream_context_create($options) : null;
        $errno = 0;
        $errstr = '';
        $warnings = [];
        if ($this->ssl !== null) {  // OpenSSL's reason comes only as PHP warnings: keep them for the exception
            set_error_handler(static function (int $no, string $message) use (&$warnings): bool {
                $warnings[] = preg_replace('/^stream_socket_client\(\): /', '', $message);
                return true;
            });
        }
        try {
            $sock = @stream_socket_client($this->address, $errno, $errstr, $this->connectTimeout, $flags, $context);
        } finally {
            if ($this->ssl !== null) {
                restore_error_handler();
            }
        }
        if ($sock === false && $warnings !== [] && $errno !== 110 && stripos($errstr, 'timed out') === false) {
            $reason = str_replace(["\n", $this->address], [' ', $this->uri], implode('; ', $warnings));
            throw new ConnectionException("TLS connection to {$this->uri} failed: $reason; check the 'tls' option: "
                . 'cafile must be the CA that signed the server\'s certificate, the host must be a name in it '
                . '(or set peer_name), and a server with --tls-client-ca needs local_cert/local_pk');
        }
        if ($sock === false) {
            if ($errno === 110 || stripos($errstr, 'timed out') !== false) {
                throw new ClientTimeoutException("connecting to {$this->uri} took over {$this->connectTimeout} s "
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
