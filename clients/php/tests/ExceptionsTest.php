<?php

declare(strict_types=1);

namespace Ppy\Tests;

use PHPUnit\Framework\TestCase;
use Ppy;
use Ppy\Client;
use Ppy\Tests\Support\Env;
use Ppy\Tests\Support\ScriptedServer;

/** Every exception type, produced for real; after each one the next call works. */
final class ExceptionsTest extends TestCase
{
    private static function client(array $options = []): Client
    {
        return new Client(Env::tcp(), $options);
    }

    /** @return Ppy\Exception the exception $fn throws, checked to be a $class */
    private function catch(string $class, callable $fn): Ppy\Exception
    {
        try {
            $fn();
        } catch (Ppy\Exception $e) {
            $this->assertInstanceOf($class, $e, get_class($e) . ': ' . $e->getMessage());
            $this->assertNotSame('', $e->getMessage());
            return $e;
        }
        $this->fail("expected $class");
    }

    private function assertHealthy(Client $c): void
    {
        $this->assertSame('hello, still!', $c->call('t.greet', 'still'));
    }

    public function testMethodNotFound(): void
    {
        $c = self::client();
        foreach (['t.nope', 'nope.hello', 't._private', 'os.system', 't'] as $method) {
            $e = $this->catch(Ppy\MethodNotFoundException::class, fn () => $c->call($method));
            $this->assertSame(-32601, $e->getCode());
        }
        $this->assertHealthy($c);
    }

    public function testInvalidParams(): void
    {
        $c = self::client();
        $e = $this->catch(Ppy\InvalidParamsException::class, fn () => $c->call('t.add', 1, 'many'));
        $this->assertSame(-32602, $e->getCode());
        $this->assertSame('b', $e->getData()['param']);
        $this->assertStringContainsString("'b'", $e->getMessage());
        $this->catch(Ppy\InvalidParamsException::class, fn () => $c->call('t.greet'));
        $this->catch(Ppy\InvalidParamsException::class, fn () => $c->call('t.greet', nom: 'x'));
        $this->catch(Ppy\InvalidParamsException::class, fn () => $c->call('t.paint', 'green'));
        $this->assertHealthy($c);
    }

    public function testApplicationErrorCarriesThePythonType(): void
    {
        $c = self::client();
        $e = $this->catch(Ppy\ApplicationException::class, fn () => $c->call('t.fail', 'bad thing ü'));
        $this->assertSame(-32000, $e->getCode());
        $this->assertSame('ValueError', $e->getType());
        $this->assertSame('bad thing ü', $e->getMessage());
        $this->assertSame('ValueError', $e->getData()['type']);
        $this->assertHealthy($c);
    }

    public function testInternalError(): void
    {
        $c = self::client();
        $e = $this->catch(Ppy\InternalErrorException::class, fn () => $c->call('t.nan'));
        $this->assertSame(-32603, $e->getCode());
        $this->assertNull($e->getType());
        $this->assertHealthy($c);
    }

    public function testInvalidRequest(): void
    {
        $c = self::client();
        $e = $this->catch(Ppy\InvalidRequestException::class, fn () => $c->call(''));
        $this->assertSame(-32600, $e->getCode());
        $this->assertHealthy($c);
    }

    public function testServerSideTimeout(): void
    {
        $c = self::client();
        $start = microtime(true);
        $e = $this->catch(Ppy\RemoteTimeoutException::class, fn () => $c->withTimeout(0.3)->call('t.asleep', 3));
        $elapsed = microtime(true) - $start;
        $this->assertSame(-32001, $e->getCode());
        $this->assertGreaterThanOrEqual(0.25, $elapsed);
        $this->assertLessThan(2.5, $elapsed);  // far less than the 3 s the function wanted
        // The server answered in time, so the connection was kept and works.
        $this->assertHealthy($c);
        // The timeout option is sent with every call, so the server gives up at the same moment.
        $e = $this->catch(
            Ppy\RemoteTimeoutException::class,
            fn () => self::client(['timeout' => 0.3])->call('t.sleep', 2)
        );
        $this->assertSame(0.3, $e->getData()['timeout']);
    }

    public function testOverloaded(): void
    {
        $c = new Client('tcp://127.0.0.1:' . Env::get('PPY_TEST_LIMITS_PORT'));  // --max-inflight 1
        $c->notify('t.asleep', 1.0);  // takes the only slot for a second
        usleep(100_000);
        $e = $this->catch(Ppy\OverloadedException::class, fn () => $c->call('t.greet', 'x'));
        $this->assertSame(-32002, $e->getCode());
        $deadline = microtime(true) + 5;
        while (true) {  // the slot frees up once the sleeper is done
            try {
                $this->assertSame('hello, x!', $c->call('t.greet', 'x'));
                break;
            } catch (Ppy\OverloadedException $e) {
                $this->assertLessThan($deadline, microtime(true), 'still overloaded after 5 s');
                usleep(50_000);
            }
        }
    }

    public function testUnauthorized(): void
    {
        $uri = 'tcp://127.0.0.1:' . Env::get('PPY_TEST_TOKEN_PORT');
        $token = Env::get('PPY_TEST_TOKEN');
        $e = $this->catch(Ppy\UnauthorizedException::class, fn () => (new Client($uri))->call('t.greet', 'x'));
        $this->assertSame(-32003, $e->getCode());
        $this->catch(
            Ppy\UnauthorizedException::class,
            fn () => (new Client($uri, ['token' => 'wrong', 'persistent' => false]))->call('t.greet', 'x')
        );
        $good = new Client($uri, ['token' => $token, 'persistent' => false]);
        $this->assertSame('hello, in!', $good->call('t.greet', 'in'));
        $this->assertSame('hello, again!', $good->call('t.greet', 'again'));
        $this->assertSame(['hello, b!'], $good->batch()->call('t.greet', 'b')->send());
    }

    public function testConnectionRefused(): void
    {
        $uri = 'tcp://127.0.0.1:' . Env::closedPort();
        $e = $this->catch(Ppy\ConnectionException::class, fn () => (new Client($uri))->call('t.greet', 'x'));
        $this->assertStringContainsString($uri, $e->getMessage());
        $this->catch(
            Ppy\ConnectionException::class,
            fn () => (new Client('unix:///nonexistent/ppy.sock'))->call('t.greet', 'x')
        );
    }

    public function testClientSideTimeoutWhenTheServerNeverAnswers(): void
    {
        $server = new ScriptedServer([[['readline'], ['sleep', 3000]]]);
        $start = microtime(true);
        $e = $this->catch(
            Ppy\TimeoutException::class,
            fn () => (new Client($server->uri(), ['timeout' => 0.2, 'persistent' => false]))->call('t.greet', 'x')
        );
        $elapsed = microtime(true) - $start;
        $this->assertGreaterThanOrEqual(0.2, $elapsed);
        $this->assertLessThan(0.2 + Client::GRACE + 1.0, $elapsed);
        $this->assertStringContainsString('no reply', $e->getMessage());
    }

    public function testErrorCodesMapToClasses(): void
    {
        $expected = [
            -32700 => Ppy\ParseErrorException::class, -32600 => Ppy\InvalidRequestException::class,
            -32601 => Ppy\MethodNotFoundException::class, -32602 => Ppy\InvalidParamsException::class,
            -32603 => Ppy\InternalErrorException::class, -32000 => Ppy\ApplicationException::class,
            -32001 => Ppy\RemoteTimeoutException::class, -32002 => Ppy\OverloadedException::class,
            -32003 => Ppy\UnauthorizedException::class, -32004 => Ppy\WorkerCrashedException::class,
            -32005 => Ppy\CancelledException::class,
        ];
        foreach ($expected as $code => $class) {
            $e = Ppy\RemoteException::fromError(['code' => $code, 'message' => "m$code", 'data' => ['type' => 'T']]);
            $this->assertSame($class, get_class($e));
            $this->assertSame($code, $e->getCode());
            $this->assertSame("m$code", $e->getMessage());
            $this->assertSame('T', $e->getType());
        }
        $other = Ppy\RemoteException::fromError(['code' => -31999, 'message' => 'x', 'data' => 5]);
        $this->assertSame(Ppy\RemoteException::class, get_class($other));
        $this->assertSame(['value' => 5], $other->getData());
        $this->assertInstanceOf(Ppy\InternalErrorException::class, Ppy\RemoteException::fromError('junk'));
    }

    public function testHierarchy(): void
    {
        foreach (
            [Ppy\ConnectionException::class, Ppy\ClientTimeoutException::class, Ppy\RemoteException::class,
                  Ppy\ProtocolException::class] as $class
        ) {
            $this->assertTrue(is_subclass_of($class, Ppy\Exception::class), $class);
        }
        // Ppy\TimeoutException is now the interface of both timeouts (a class cannot have two parents).
        $this->assertTrue(is_subclass_of(Ppy\TimeoutException::class, Ppy\ExceptionInterface::class));
        $this->assertTrue(is_subclass_of(Ppy\ProtocolException::class, Ppy\ConnectionException::class));
        $this->assertTrue(is_subclass_of(Ppy\Exception::class, \RuntimeException::class));
        foreach (Ppy\RemoteException::CLASSES as $class) {
            $this->assertTrue(is_subclass_of($class, Ppy\RemoteException::class), $class);
        }
    }
}
