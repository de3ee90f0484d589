<?php

declare(strict_types=1);

namespace Ppy\Tests\Support;

/** A real `python -m ppy serve` subprocess (for tests that restart a server). */
final class ServerProcess
{
    /** @var resource */
    private $proc;

    private function __construct(public readonly int $port, private string $log)
    {
    }

    /** @param list<string> $args extra `ppy serve` flags */
    public static function start(string $app, array $args = [], ?int $port = null): self
    {
        $port ??= Env::closedPort();
        $log = sys_get_temp_dir() . "/ppy-phpunit-server-$port.log";
        $cmd = [Env::python(), '-m', 'ppy', 'serve', $app, '--port', (string) $port, '--http-port', '0', ...$args];
        $proc = proc_open(
            $cmd,
            [0 => ['file', '/dev/null', 'r'], 1 => ['file', $log, 'a'], 2 => ['file', $log, 'a']],
            $pipes
        );
        if (!is_resource($proc)) {
            throw new \RuntimeException('cannot start ' . implode(' ', $cmd));
        }
        $server = new self($port, $log);
        $server->proc = $proc;
        $server->waitReady();
        return $server;
    }

    private function waitReady(): void
    {
        $deadline = microtime(true) + 20;
        while (microtime(true) < $deadline) {
            if (!proc_get_status($this->proc)['running']) {
                throw new \RuntimeException("ppy serve exited early:\n" . file_get_contents($this->log));
            }
            $sock = @stream_socket_client("tcp://127.0.0.1:{$this->port}", $errno, $errstr, 0.5);
            if ($sock !== false) {
                fclose($sock);
                return;
            }
            usleep(50_000);
        }
        $this->stop();
        throw new \RuntimeException("ppy serve did not start within 20 s:\n" . file_get_contents($this->log));
    }

    /** SIGTERM (graceful drain), then wait for the exit; SIGKILL after 10 s. */
    public function stop(): void
    {
        if (!isset($this->proc) || !is_resource($this->proc)) {
            return;
        }
        proc_terminate($this->proc, 15);
        $deadline = microtime(true) + 10;
        while (proc_get_status($this->proc)['running'] && microtime(true) < $deadline) {
            usleep(20_000);
        }
        if (proc_get_status($this->proc)['running']) {
            proc_terminate($this->proc, 9);
        }
        proc_close($this->proc);
    }
}
