<?php

declare(strict_types=1);

namespace Ppy\Tests;

use PHPUnit\Framework\TestCase;
use Ppy;
use Ppy\Tests\Support\Env;
use Ppy\Tests\Support\ScriptedServer;

/** ppy_exchange(): the seed's exchange(), framed correctly, with timeouts and exceptions. */
final class ExchangeTest extends TestCase
{
    protected function setUp(): void
    {
        putenv('PPY_HOST=127.0.0.1');
        putenv('PPY_PORT=' . Env::get('PPY_TEST_PORT'));
    }

    protected function tearDown(): void
    {
        putenv('PPY_HOST');
        putenv('PPY_PORT');
        putenv('PPY_TOKEN');
    }

    /** @return array{0: int, 1: string} exit code and output of a PHP subprocess */
    private static function php(array $args, array $env = []): array
    {
        $proc = proc_open([PHP_BINARY, ...$args], [0 => ['file', '/dev/null', 'r'], 1 => ['pipe', 'w'],
            2 => ['pipe', 'w']], $pipes, null, $env + ['PATH' => (string) getenv('PATH')]);
        $out = stream_get_contents($pipes[1]) . stream_get_contents($pipes[2]);
        fclose($pipes[1]);
        fclose($pipes[2]);
        return [proc_close($proc), $out];
    }

    public function testReturnsTheSeedsJsonString(): void
    {
        $this->assertSame('{"data": "hello, bob!", "error": ""}', ppy_exchange('t', 'greet', ['bob']));
        $this->assertSame(
            '{"data": "hello, Ann?", "error": ""}',
            ppy_exchange('t', 'greet', ['name' => 'Ann', 'punctuation' => '?'])
        );
        $this->assertSame('{"data": null, "error": ""}', ppy_exchange('t', 'nothing'));
        $reply = json_decode(ppy_exchange('t', 'echo', [['a' => [1, 2.5, true], 'é' => 'ü😀']]), true);
        $this->assertSame(['data' => ['a' => [1, 2.5, true], 'é' => 'ü😀'], 'error' => ''], $reply);
    }

    public function testServerErrorsComeBackInTheErrorMemberLikeTheSeed(): void
    {
        $reply = json_decode(ppy_exchange('t', 'fail', ['broken']), true);
        $this->assertSame([], $reply['data']);
        $this->assertSame('ValueError: broken', $reply['error']);
        $reply = json_decode(ppy_exchange('t', 'no_such'), true);
        $this->assertStringContainsString('no_such', $reply['error']);
        $reply = json_decode(ppy_exchange('t', 'sleep', [3], ['timeout' => 0.3]), true);
        $this->assertStringContainsString('deadline', $reply['error']);
    }

    public function testAgreesWithTheSeedsExchangeByteForByte(): void
    {
        $calls = [['t', 'greet', ['bob']], ['t', 'no_such', []], ['t', 'fail', ['x']],
                  ['t', 'echo', ['héllo 😀 </script>']], ['t', 'echo', [[1, [2, ['k' => null]]]]],
                  ['t', 'add', ['2', '3']], ['t', 'blob', [900]]];
        [$code, $out] = self::php([__DIR__ . '/fixtures/seed_compare.php', Env::get('PPY_TEST_PORT'),
            json_encode($calls)]);
        $this->assertSame(0, $code, $out);
        $pairs = json_decode($out, true, 64, JSON_THROW_ON_ERROR);
        $this->assertCount(count($calls), $pairs);
        foreach ($pairs as $i => $pair) {
            $this->assertSame($pair['seed'], $pair['ppy'], json_encode($calls[$i]));
        }
        $this->assertSame('{"data": 5, "error": ""}', $pairs[5]['ppy']);
    }

    public function testReadsExactlyTheAnnouncedLength(): void
    {
        $mib = 1 << 20;
        $reply = ppy_exchange('t', 'blob', [$mib]);
        $this->assertSame(strlen('{"data": "", "error": ""}') + $mib, strlen($reply));
        $this->assertSame(str_repeat('x', $mib), json_decode($reply, true)['data']);
        $big = str_repeat('ß', $mib / 2);
        $this->assertSame($mib, json_decode(ppy_exchange('t', 'size', [$big]), true)['data']);
    }

    public function testServerAddressResolution(): void
    {
        $port = Env::get('PPY_TEST_PORT');
        // Constants win over the environment.
        $code = 'define("PPY_PORT", ' . $port . '); require ' . var_export(dirname(__DIR__) . '/autoload.php', true)
            . '; echo ppy_exchange("t", "greet", ["const"]);';
        [$rc, $out] = self::php(['-r', $code], ['PPY_PORT' => (string) Env::closedPort()]);
        $this->assertSame([0, '{"data": "hello, const!", "error": ""}'], [$rc, $out]);
        // Without constants, the environment.
        $code = 'require ' . var_export(dirname(__DIR__) . '/autoload.php', true)
            . '; echo ppy_exchange("t", "greet", ["env"]);';
        [$rc, $out] = self::php(['-r', $code], ['PPY_HOST' => '127.0.0.1', 'PPY_PORT' => $port]);
        $this->assertSame([0, '{"data": "hello, env!", "error": ""}'], [$rc, $out]);
        // Neither: 127.0.0.1:32123.
        $code = 'require ' . var_export(dirname(__DIR__) . '/autoload.php', true)
            . '; try { ppy_exchange("t", "greet", ["x"]); echo "reached"; } '
            . 'catch (Ppy\ConnectionException $e) { echo $e->getMessage(); }';
        [$rc, $out] = self::php(['-r', $code]);
        $this->assertSame(0, $rc, $out);
        if ($out !== 'reached') {
            $this->assertStringContainsString('tcp://127.0.0.1:32123', $out);
        }
    }

    public function testTokenOption(): void
    {
        putenv('PPY_PORT=' . Env::get('PPY_TEST_TOKEN_PORT'));
        $reply = json_decode(ppy_exchange('t', 'greet', ['x']), true);
        $this->assertStringContainsString('token required', $reply['error']);
        $this->assertSame(
            '{"data": "hello, x!", "error": ""}',
            ppy_exchange('t', 'greet', ['x'], ['token' => Env::get('PPY_TEST_TOKEN')])
        );
        putenv('PPY_TOKEN=' . Env::get('PPY_TEST_TOKEN'));
        $this->assertSame('{"data": "hello, y!", "error": ""}', ppy_exchange('t', 'greet', ['y']));
    }

    public function testThrowsInsteadOfDie(): void
    {
        foreach ([['', 'hello', []], ['t', '', []], ['t', 'greet', 'notarray'], [null, 'x', []]] as $args) {
            try {
                ppy_exchange(...$args);
                $this->fail('accepted ' . json_encode($args));
            } catch (\InvalidArgumentException $e) {
                $this->assertStringContainsString('ppy_exchange()', $e->getMessage());
            }
        }
        try {
            ppy_exchange('t', 'greet', [], ['timout' => 1]);
            $this->fail('accepted an unknown option');
        } catch (\InvalidArgumentException $e) {
            $this->assertStringContainsString('timout', $e->getMessage());
        }
        putenv('PPY_PORT=' . Env::closedPort());
        $this->expectException(Ppy\ConnectionException::class);
        ppy_exchange('t', 'greet', ['x']);
    }

    public function testTimeoutWhenTheServerNeverAnswers(): void
    {
        $server = new ScriptedServer([[['readlegacy'], ['sleep', 3000]]]);
        putenv("PPY_PORT={$server->port}");
        $start = microtime(true);
        try {
            ppy_exchange('t', 'greet', ['x'], ['timeout' => 0.3]);
            $this->fail('no timeout');
        } catch (Ppy\TimeoutException $e) {
            $this->assertLessThan(2.5, microtime(true) - $start);
        }
    }

    public function testTruncatedAndMalformedRepliesAreErrorsNotData(): void
    {
        $server = new ScriptedServer([
            [['readlegacy'], ['send', '38.00000000{"data": "hello', 4, 0]],   // closes 20 bytes short
            [['readlegacy'], ['send', 'HTTP/1.1 400 Bad Request', 0, 0]],    // not a ppy server
        ]);
        putenv("PPY_PORT={$server->port}");
        try {
            ppy_exchange('t', 'greet', ['x']);
            $this->fail('a truncated reply was accepted');
        } catch (Ppy\ConnectionException $e) {
            $this->assertNotInstanceOf(Ppy\ProtocolException::class, $e);
            $this->assertStringContainsString('incomplete', $e->getMessage());
        }
        $this->expectException(Ppy\ProtocolException::class);
        ppy_exchange('t', 'greet', ['x']);
    }
}
