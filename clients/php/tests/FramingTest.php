<?php

declare(strict_types=1);

namespace Ppy\Tests;

use PHPUnit\Framework\TestCase;
use Ppy;
use Ppy\Client;
use Ppy\Tests\Support\ScriptedServer;

/** How the client reads replies, against a scripted server that sends exactly the bytes we choose. */
final class FramingTest extends TestCase
{
    private static function client(ScriptedServer $server, array $options = []): Client
    {
        return new Client($server->uri(), $options + ['persistent' => false, 'timeout' => 5]);
    }

    public function testAReplySplitIntoSingleBytesIsReadWhole(): void
    {
        $reply = '{"jsonrpc":"2.0","id":{ID},"result":"héllo 😀 ' . str_repeat('x', 200) . "\"}\n";
        $server = new ScriptedServer([[['readline'], ['send', $reply, 1, 0]]]);
        $this->assertSame('héllo 😀 ' . str_repeat('x', 200), self::client($server)->call('t.any'));
        $server->finish();
    }

    public function testAReplyWithPausesMidLineIsNotTruncated(): void
    {
        $reply = '{"jsonrpc":"2.0","id":{ID},"result":[1,2,3,4,5,6,7,8,9]}' . "\n";
        $server = new ScriptedServer([[['readline'], ['send', $reply, 7, 30]]]);
        $this->assertSame(range(1, 9), self::client($server)->call('t.any'));
        $server->finish();
    }

    public function testRepliesForOtherIdsAreSkipped(): void
    {
        $server = new ScriptedServer([[['readline'], ['send',
            '{"jsonrpc":"2.0","id":1,"result":"stale"}' . "\n"
            . '[{"jsonrpc":"2.0","id":2,"result":"stale batch"}]' . "\n"
            . '{"jsonrpc":"2.0","id":{ID},"result":"mine"}' . "\n", 0, 0]]]);
        $this->assertSame('mine', self::client($server)->call('t.any'));
        $server->finish();
    }

    public function testAnErrorWithoutIdIsThrownAndTheConnectionDropped(): void
    {
        $server = new ScriptedServer([
            [
                ['readline'],
                ['send', '{"jsonrpc":"2.0","id":null,"error":{"code":-32002,"message":"full"}}' . "\n", 0, 0],
                ['sleep', 200],
            ],
            [['readline'], ['send', '{"jsonrpc":"2.0","id":{ID},"result":"second connection"}' . "\n", 0, 0]],
        ]);
        $client = self::client($server, ['persistent' => true]);
        try {
            $client->call('t.any');
            $this->fail('no exception');
        } catch (Ppy\OverloadedException $e) {
            $this->assertSame('full', $e->getMessage());
        }
        $this->assertSame('second connection', $client->call('t.any'));
        $client->close();
        $server->finish();
    }

    public function testGarbageIsAProtocolException(): void
    {
        $server = new ScriptedServer([[['readline'], ['send', "HTTP/1.1 400 Bad Request\r\n\r\n", 0, 0]]]);
        try {
            self::client($server)->call('t.any');
            $this->fail('no exception');
        } catch (Ppy\ProtocolException $e) {
            $this->assertStringContainsString('HTTP/1.1 400', $e->getMessage());
        }
        $server->finish();
    }

    public function testAResponseWithoutResultOrErrorIsAProtocolException(): void
    {
        $server = new ScriptedServer([[['readline'], ['send', '{"jsonrpc":"2.0","id":{ID}}' . "\n", 0, 0]]]);
        $this->expectException(Ppy\ProtocolException::class);
        self::client($server)->call('t.any');
    }

    public function testTheServerClosingMidReplyIsAConnectionException(): void
    {
        $server = new ScriptedServer([[['readline'], ['send', '{"jsonrpc":"2.0","id":{ID},"res', 0, 0]]]);
        try {
            self::client($server)->call('t.any');
            $this->fail('no exception');
        } catch (Ppy\ConnectionException $e) {
            $this->assertStringContainsString('closed the connection', $e->getMessage());
        }
        $server->finish();
    }

    public function testABatchReplyMissingACallIsAProtocolException(): void
    {
        $server = new ScriptedServer([[['readline'],
            ['send', '[{"jsonrpc":"2.0","id":{ID1},"result":"b"}]' . "\n", 0, 0]]]);
        try {
            self::client($server)->batch()->call('t.a')->call('t.b')->send();
            $this->fail('a batch reply without the first call was accepted');
        } catch (Ppy\ProtocolException $e) {
            $this->assertStringContainsString('no response for request id', $e->getMessage());
        }
        $server->finish();
    }

    public function testBatchRepliesAreMatchedByIdNotPosition(): void
    {
        $server = new ScriptedServer([[['readline'], ['send',
            '[{"jsonrpc":"2.0","id":7,"result":"stale"}]' . "\n"
            . '[{"jsonrpc":"2.0","id":{ID1},"result":"b"},{"jsonrpc":"2.0","id":{ID0},"error":'
            . '{"code":-32000,"message":"boom","data":{"type":"KeyError"}}}]' . "\n", 0, 0]]]);
        $results = self::client($server)->batch()->call('t.a')->call('t.b')->send();
        $this->assertInstanceOf(Ppy\ApplicationException::class, $results[0]);
        $this->assertSame('KeyError', $results[0]->getType());
        $this->assertSame('b', $results[1]);
        $server->finish();
    }

    public function testLegacyRepliesSplitIntoSingleBytes(): void
    {
        $payload = '{"data": "h\u00e9llo", "error": ""}';
        $server = new ScriptedServer([[['readlegacy'], ['send', Ppy\Legacy::encodeFrame($payload), 1, 0]]]);
        putenv("PPY_PORT={$server->port}");
        try {
            $this->assertSame($payload, ppy_exchange('h', 'hello'));
        } finally {
            putenv('PPY_PORT');
        }
        $server->finish();
    }
}
