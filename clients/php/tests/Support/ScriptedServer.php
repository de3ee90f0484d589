<?php

declare(strict_types=1);

namespace Ppy\Tests\Support;

/** Runs tests/fixtures/scripted_server.php: a server that sends exactly what a test scripts. */
final class ScriptedServer
{
    /** @var resource */
    private $proc;
    public readonly int $port;

    /** @param list<list<list<mixed>>> $connections one list of steps per connection */
    public function __construct(array $connections)
    {
        $cmd = [PHP_BINARY, __DIR__ . '/../fixtures/scripted_server.php', base64_encode(json_encode($connections))];
        $proc = proc_open(
            $cmd,
            [0 => ['file', '/dev/null', 'r'], 1 => ['pipe', 'w'], 2 => ['file', '/dev/null', 'w']],
            $pipes
        );
        if (!is_resource($proc)) {
            throw new \RuntimeException('cannot start the scripted server');
        }
        $this->proc = $proc;
        stream_set_timeout($pipes[1], 10);
        $this->port = (int) fgets($pipes[1]);
        fclose($pipes[1]);
        if ($this->port <= 0) {
            throw new \RuntimeException('the scripted server did not report its port');
        }
    }

    public function uri(): string
    {
        return "tcp://127.0.0.1:{$this->port}";
    }

    /** Wait for the script to finish (bounded), then make sure the process is gone. */
    public function finish(): void
    {
        $deadline = microtime(true) + 10;
        while (proc_get_status($this->proc)['running'] && microtime(true) < $deadline) {
            usleep(10_000);
        }
        if (proc_get_status($this->proc)['running']) {
            proc_terminate($this->proc, 9);
        }
        proc_close($this->proc);
    }

    public function __destruct()
    {
        if (is_resource($this->proc)) {
            proc_terminate($this->proc, 9);
            proc_close($this->proc);
        }
    }
}
