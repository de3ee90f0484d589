<?php

declare(strict_types=1);

namespace Ppy\Tests;

use PHPUnit\Framework\TestCase;
use Ppy;
use Ppy\Client;
use Ppy\Tests\Support\ScriptedServer;

/**
 * Riding out a server restart: rpc.goaway moves calls to a fresh connection, a call closed unanswered
 * after rpc.goaway is sent again, refused connects fail cleanly after connect_timeout without leaking
 * a warning to the application's error handler.
 */
final class RestartTest extends TestCase
{
    private const GOAWAY = '{"jsonrpc":"2.0","method":"rpc.goaway"}' . "\n";

    public function testAfterGoawayTheNextCallUsesAFreshConnection(): void
    {
        $server = new ScriptedServer([
            [['readline'], ['send', self::GOAWAY . '{"jsonrpc":"2.0","id":{ID},"result":"old"}' . "\n"],
                ['sleep', 2000]],
            [['readline'], ['send', '{"jsonrpc":"2.0","id":{ID},"result":"new"}' . "\n"]],
        ]);
        $client = new Client($server->uri(), ['persistent' => false, 'timeout' => 5]);
        $this->assertSame('old', $client->call('t.greet', 'x')); // answered on the old connection
        $this->assertSame('new', $client->call('t.greet', 'y')); // the old one is open, yet not used
        $server->finish();
    }

    public function testACallClosedUnansweredAfterGoawayIsSentAgainOnAFreshConnection(): void
    {
        $server = new ScriptedServer([
            // The first call is answered; the second reaches a server that says goaway and closes
            // without reading it (as a draining ppy does once its grace period is over).
            [['readline'], ['send', '{"jsonrpc":"2.0","id":{ID},"result":"first"}' . "\n"], ['readline'],
                ['send', self::GOAWAY]],
            [['readline'], ['send', '{"jsonrpc":"2.0","id":{ID},"result":"again"}' . "\n"]],
        ]);
        $client = new Client($server->uri(), ['persistent' => false, 'timeout' => 5]);
        $this->assertSame('first', $client->call('t.greet', 'x'));
        $this->assertSame('again', $client->call('t.greet', 'y'));
        $server->finish();
    }

    public function testWithoutGoawayAnUnansweredCallIsNeverSentAgain(): void
    {
        $server = new ScriptedServer([
            [['readline'], ['send', '{"jsonrpc":"2.0","id":{ID},"result":"first"}' . "\n"], ['readline']],
            [['readline'], ['send', '{"jsonrpc":"2.0","id":{ID},"result":"must not be asked"}' . "\n"]],
        ]);
        $client = new Client($server->uri(), ['persistent' => false, 'timeout' => 5]);
        $this->assertSame('first', $client->call('t.greet', 'x'));
        try {
            $client->call('t.greet', 'y');
            $this->fail('a call that may have run was sent again');
        } catch (Ppy\ConnectionException $e) {
            $this->assertStringContainsString('may or may not have run', $e->getMessage());
        }
        $this->assertSame('must not be asked', $client->call('t.greet', 'z')); // the next call reconnects
        $server->finish();
    }

    public function testARefusedConnectFailsAfterConnectTimeoutWithoutWarningTheErrorHandler(): void
    {
        $probe = stream_socket_server('tcp://127.0.0.1:0');
        $port = (int) substr((string) strrchr((string) stream_socket_get_name($probe, false), ':'), 1);
        fclose($probe); // nothing listens there now
        $seen = [];
        // An application handler that ignores error_reporting(), as many frameworks' do.
        set_error_handler(static function (int $no, string $message) use (&$seen): bool {
            $seen[] = $message;
            return true;
        });
        try {
            foreach (
                ['tcp' => fn () => (new Client(
                    "tcp://127.0.0.1:$port",
                    ['connect_timeout' => 0.3, 'persistent' => false]
                ))->call('t.greet', 'x'),
                      'unix' => fn () => (new Client(
                          'unix:///nonexistent/ppy.sock',
                          ['connect_timeout' => 0.3, 'persistent' => false]
                      ))->call('t.greet', 'x'),
                      'exchange' => function () use ($port): void {
                          putenv("PPY_PORT=$port");
                        try {
                            ppy_exchange('t', 'greet', ['x'], ['connect_timeout' => 0.3]);
                        } finally {
                            putenv('PPY_PORT');
                        }
                      }] as $kind => $call
            ) {
                try {
                    $call();
                    $this->fail("$kind: connected to nothing");
                } catch (Ppy\ConnectionException $e) {
                    $this->assertStringContainsString('retried for 0.3 s', $e->getMessage(), $kind);
                }
            }
        } finally {
            restore_error_handler();
        }
        $this->assertSame([], $seen, 'a suppressed connect warning reached the error handler');
    }
}
