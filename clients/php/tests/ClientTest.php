<?php

declare(strict_types=1);

namespace Ppy\Tests;

use PHPUnit\Framework\TestCase;
use Ppy\Client;
use Ppy\RemoteException;
use Ppy\Tests\Support\Env;

/** Every call style against a real `ppy serve` (tests/apps/php). */
final class ClientTest extends TestCase
{
    private static function client(array $options = []): Client
    {
        return new Client(Env::tcp(), $options);
    }

    public function testPositionalArguments(): void
    {
        $this->assertSame('hello, bob!', self::client()->call('t.greet', 'bob'));
        $this->assertSame(
            ['args' => [1, 'two', null], 'kwargs' => []],
            self::client()->call('t.echo_args', 1, 'two', null)
        );
    }

    public function testNamedArgumentsBecomeKeywordArguments(): void
    {
        $this->assertSame('hello, Ann?', self::client()->call('t.greet', punctuation: '?', name: 'Ann'));
        $this->assertSame(
            ['args' => [], 'kwargs' => ['a' => 1, 'b' => [2]]],
            self::client()->call('t.echo_args', a: 1, b: [2])
        );
    }

    public function testMixingPositionalAndNamedIsRefusedBeforeSending(): void
    {
        $this->expectException(\InvalidArgumentException::class);
        $this->expectExceptionMessage('not both');
        self::client()->call('t.greet', 'bob', punctuation: '?');
    }

    public function testPropertySugar(): void
    {
        $c = self::client();
        $this->assertSame('hello, Zoë!', $c->t->greet('Zoë'));
        $this->assertSame('hello, Zoë.', $c->t->greet(name: 'Zoë', punctuation: '.'));
        $this->assertSame(5, $c->t->add(2, '3'));  // "3" converted by the int annotation
    }

    public function testRequestTakesParamsAsOneArrayOrObject(): void
    {
        $c = self::client();
        $this->assertSame(['args' => [1, 2], 'kwargs' => []], $c->request('t.echo_args', [1, 2]));
        $this->assertSame(['args' => [], 'kwargs' => ['method' => 'x']], $c->request('t.echo_args', ['method' => 'x']));
        $this->assertSame('hello, O!', $c->request('t.greet', (object) ['name' => 'O']));
        $this->assertSame('pong', $c->request('rpc.ping'));
    }

    public function testTypesRoundTrip(): void
    {
        $c = self::client();
        $value = ['int' => 1, 'float' => 1.5, 'whole' => 2.0, 'bool' => true, 'null' => null,
                  'list' => [1, [2, [3]]], 'map' => ['k' => 'v'], 'empty' => []];
        $this->assertSame($value, $c->call('t.echo', $value));
        $this->assertSame([], $c->call('t.echo', new \stdClass()));  // {} comes back as an empty PHP array
        $this->assertSame(
            ['x' => 6, 'y' => 8, 'label' => 'p'],
            $c->call('t.scale', ['x' => 3, 'y' => 4, 'label' => 'p'])
        );
        $this->assertSame('blue:a,b', $c->call('t.paint', 'blue', ['a', 'b']));
        $this->assertNull($c->call('t.nothing'));
        $this->assertNull($c->call('t.maybe'));
        $this->assertSame(7, $c->call('t.maybe', 7));
    }

    public function testUnicodeBothWays(): void
    {
        $text = "héllo wörld — 日本語 😀 \u{2028} \"quoted\" \\ / \n\t";
        $this->assertSame($text, self::client()->call('t.echo', $text));
        $this->assertSame(strlen($text), self::client()->call('t.size', $text));
    }

    public function testOneMebibytePayloadsBothWays(): void
    {
        $c = self::client();
        $mib = 1 << 20;
        $big = str_repeat('é', $mib / 2);  // 1 MiB of 2-byte UTF-8
        $this->assertSame($mib, $c->call('t.size', $big));
        $this->assertSame(str_repeat('x', $mib), $c->call('t.blob', $mib));
        $this->assertSame($big, $c->call('t.echo', $big));
        $this->assertSame('hello, a!', $c->call('t.greet', 'a'));  // the connection is still in step
    }

    public function testUnixSocket(): void
    {
        $c = new Client(Env::unix());
        $this->assertSame('hello, uds!', $c->call('t.greet', 'uds'));
        $this->assertSame('hello, again!', $c->t->greet('again'));
    }

    public function testNonPersistentClient(): void
    {
        $c = self::client(['persistent' => false]);
        $this->assertSame('hello, a!', $c->call('t.greet', 'a'));
        $this->assertSame('hello, b!', $c->call('t.greet', 'b'));
        $c->close();
        $this->assertSame('hello, c!', $c->call('t.greet', 'c'));  // reconnects after close()
    }

    public function testNotificationRunsAndReturnsNothing(): void
    {
        $c = self::client();
        $key = 'n' . random_int(1, PHP_INT_MAX);
        $c->notify('t.note', $key, 'seen');
        $c->notify('t.no_such_function');  // errors of notifications are not reported
        $deadline = microtime(true) + 5;
        do {
            $seen = $c->call('t.noted', $key);
        } while ($seen === null && microtime(true) < $deadline && usleep(10_000) === null);
        $this->assertSame('seen', $seen);
    }

    public function testNotifyRefusesAnEmptyMethod(): void
    {
        $this->expectException(\InvalidArgumentException::class);
        self::client()->notify('');
    }

    public function testBatch(): void
    {
        $c = self::client();
        $key = 'b' . random_int(1, PHP_INT_MAX);
        $results = $c->batch()
            ->call('t.greet', 'a')
            ->call('t.add', a: 1, b: 2)
            ->notify('t.note', $key, 'from batch')
            ->call('t.nope')
            ->t->greet('sugar')
            ->send();
        $this->assertCount(4, $results);
        $this->assertSame('hello, a!', $results[0]);
        $this->assertSame(3, $results[1]);
        $this->assertInstanceOf(\Ppy\MethodNotFoundException::class, $results[2]);
        $this->assertSame(-32601, $results[2]->getCode());
        $this->assertSame('hello, sugar!', $results[3]);
        $this->assertSame('from batch', $c->call('t.noted', $key));
    }

    public function testBatchEdgeCases(): void
    {
        $c = self::client();
        $batch = $c->batch();
        $this->assertSame([], $batch->send());  // nothing to send: no request at all
        $batch->notify('t.note', 'only-notes', 1);
        $this->assertCount(1, $batch);
        $this->assertSame([], $batch->send());  // all notifications: the server sends nothing back
        $this->assertCount(0, $batch);
        $many = $c->batch();
        for ($i = 0; $i < 50; $i++) {
            $many->call('t.add', $i, 1);
        }
        $this->assertSame(range(1, 50), $many->send());
    }

    public function testBatchOverTheServerLimitIsRejectedAndTheClientRecovers(): void
    {
        $c = self::client();
        $batch = $c->batch();
        for ($i = 0; $i < 101; $i++) {
            $batch->call('t.add', $i, 1);
        }
        try {
            $batch->send();
            $this->fail('a batch of 101 must be refused (--max-batch 100)');
        } catch (\Ppy\InvalidRequestException $e) {
            $this->assertStringContainsString('100', $e->getMessage());
        }
        $this->assertSame('hello, ok!', $c->call('t.greet', 'ok'));
    }

    public function testOptionsAreValidated(): void
    {
        foreach (
            [['timout' => 1], ['timeout' => 0], ['timeout' => 'x'], ['connect_timeout' => -1],
                  ['persistent' => 1], ['token' => '']] as $options
        ) {
            try {
                new Client(Env::tcp(), $options);
                $this->fail('accepted ' . json_encode($options));
            } catch (\InvalidArgumentException $e) {
                $this->assertNotSame('', $e->getMessage());
            }
        }
        foreach (['http://127.0.0.1:1', 'unix://', 'tcp://', '127.0.0.1:32123'] as $uri) {
            try {
                new Client($uri);
                $this->fail("accepted $uri");
            } catch (\InvalidArgumentException $e) {
                $this->assertStringContainsString($uri, $e->getMessage());
            }
        }
        $this->assertSame('tcp://127.0.0.1:32123', (new Client())->getUri());
    }

    public function testValuesJsonCannotCarryAreRefusedBeforeSending(): void
    {
        $this->expectException(\InvalidArgumentException::class);
        self::client()->call('t.echo', "\xff\xfe not UTF-8");
    }

    public function testWithTimeoutSharesTheConnectionAndKeepsTheOriginal(): void
    {
        $c = self::client();
        $fast = $c->withTimeout(2);
        $this->assertNotSame($c, $fast);
        $this->assertSame(0.05, $fast->call('t.sleep', 0.05));
        $this->assertSame('hello, a!', $c->call('t.greet', 'a'));
    }

    public function testRemoteExceptionIsAPpyException(): void
    {
        try {
            self::client()->call('t.fail', 'boom');
            $this->fail('no exception');
        } catch (\Ppy\Exception $e) {
            $this->assertInstanceOf(RemoteException::class, $e);
        }
    }
}
