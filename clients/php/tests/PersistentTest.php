<?php

declare(strict_types=1);

namespace Ppy\Tests;

use PHPUnit\Framework\TestCase;
use Ppy\Client;
use Ppy\Tests\Support\Env;
use Ppy\Tests\Support\ServerProcess;

/** Persistent connections: reused across PHP requests, replaced transparently when stale. */
final class PersistentTest extends TestCase
{
    /** @return resource the persistent socket a Client with $uri uses (same address = same socket) */
    private static function sharedSocket(string $uri)
    {
        $sock = stream_socket_client($uri, $errno, $errstr, 2, STREAM_CLIENT_CONNECT | STREAM_CLIENT_PERSISTENT);
        self::assertNotFalse($sock, $errstr);
        return $sock;
    }

    public function testOneSocketServesManyClientsInOneProcess(): void
    {
        $uri = Env::tcp();
        (new Client($uri))->call('t.greet', 'a');
        $local = stream_socket_get_name(self::sharedSocket($uri), false);
        for ($i = 0; $i < 3; $i++) {
            $this->assertSame('hello, b!', (new Client($uri))->call('t.greet', 'b'));
        }
        $this->assertSame($local, stream_socket_get_name(self::sharedSocket($uri), false));
    }

    public function testTheSocketSurvivesAcrossPhpRequests(): void
    {
        $port = Env::closedPort();
        $cmd = [PHP_BINARY, '-S', "127.0.0.1:$port", '-t', __DIR__ . '/fixtures'];
        $env = ['PPY_TEST_PORT' => Env::get('PPY_TEST_PORT'), 'PATH' => getenv('PATH')];
        $proc = proc_open($cmd, [0 => ['file', '/dev/null', 'r'], 1 => ['file', '/dev/null', 'w'],
                                 2 => ['file', '/dev/null', 'w']], $pipes, null, $env);
        try {
            $pages = [];
            foreach (['one', 'two', 'three'] as $name) {
                $pages[] = self::fetch("http://127.0.0.1:$port/persistent_page.php?name=$name");
            }
        } finally {
            proc_terminate($proc);
            proc_close($proc);
        }
        $this->assertSame(['hello, one!', 'hello, two!', 'hello, three!'], array_column($pages, 'result'));
        $this->assertCount(1, array_unique(array_column($pages, 'local')), 'one socket for all three requests');
    }

    /** @return array<string, mixed> */
    private static function fetch(string $url): array
    {
        $deadline = microtime(true) + 10;
        while (true) {
            $body = @file_get_contents($url, false, stream_context_create(['http' => ['timeout' => 5]]));
            if ($body !== false) {
                return json_decode($body, true, 16, JSON_THROW_ON_ERROR);
            }
            if (microtime(true) > $deadline) {
                throw new \RuntimeException("php -S did not serve $url");
            }
            usleep(50_000);
        }
    }

    public function testServerRestartWhileAPersistentConnectionIsOpen(): void
    {
        $server = ServerProcess::start(Env::app());
        try {
            $client = new Client("tcp://127.0.0.1:{$server->port}");
            $before = $client->call('t.pid');
            $server->stop();
            $server = ServerProcess::start(Env::app(), [], $server->port);
            $after = $client->call('t.pid');  // no exception: the closed socket is replaced before sending
            $this->assertNotSame($before, $after);
            $this->assertSame('hello, back!', $client->call('t.greet', 'back'));
        } finally {
            $server->stop();
        }
    }

    public function testAStaleReplyAlreadyWaitingIsDiscarded(): void
    {
        // A previous PHP request sent a call and died before reading the reply.
        $uri = Env::tcp();
        $sock = self::sharedSocket($uri);
        fwrite($sock, '{"jsonrpc":"2.0","method":"t.echo","params":["stale"],"id":7}' . "\n");
        usleep(200_000);  // the reply is now sitting in the socket
        $this->assertSame('fresh', (new Client($uri))->call('t.echo', 'fresh'));
        $this->assertSame('fresh2', (new Client($uri))->call('t.echo', 'fresh2'));
    }

    public function testAStaleReplyArrivingLateIsSkippedById(): void
    {
        $uri = Env::tcp();
        $sock = self::sharedSocket($uri);
        // Its reply arrives after the next call was sent, so the idle check cannot see it.
        fwrite($sock, '{"jsonrpc":"2.0","method":"t.asleep","params":[0.2],"id":8}' . "\n");
        $client = new Client($uri);
        $this->assertSame(0.3, $client->call('t.asleep', 0.3));
        $this->assertSame('next', $client->call('t.echo', 'next'));
    }

    public function testAServerThatClosedAnIdleConnectionIsReconnectedTransparently(): void
    {
        $server = ServerProcess::start(Env::app(), ['--idle-timeout', '0.2']);
        try {
            $client = new Client("tcp://127.0.0.1:{$server->port}");
            $this->assertSame('hello, a!', $client->call('t.greet', 'a'));
            usleep(500_000);  // the server closed the idle connection meanwhile
            $this->assertSame('hello, b!', $client->call('t.greet', 'b'));
        } finally {
            $server->stop();
        }
    }

    public function testTokenIsSentOncePerConnectionAndSurvivesReconnects(): void
    {
        $uri = 'tcp://127.0.0.1:' . Env::get('PPY_TEST_TOKEN_PORT');
        $client = new Client($uri, ['token' => Env::get('PPY_TEST_TOKEN')]);
        $this->assertSame('hello, a!', $client->call('t.greet', 'a'));
        $other = new Client($uri, ['token' => Env::get('PPY_TEST_TOKEN')]);
        $this->assertSame('hello, b!', $other->call('t.greet', 'b'));
        $client->close();  // the next call connects (and authenticates) again
        $this->assertSame('hello, c!', $client->call('t.greet', 'c'));
    }
}
