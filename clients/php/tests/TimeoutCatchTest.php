<?php

declare(strict_types=1);

namespace Ppy\Tests;

use PHPUnit\Framework\TestCase;
use Ppy;
use Ppy\Client;
use Ppy\Tests\Support\Env;
use Ppy\Tests\Support\ScriptedServer;

/**
 * What `catch` catches: Ppy\TimeoutException both timeouts, Ppy\ExceptionInterface / Ppy\PpyException
 * everything, and the deprecated Ppy\Exception still everything, also in a process that never loaded it.
 */
final class TimeoutCatchTest extends TestCase
{
    public function testCatchTimeoutExceptionCatchesTheServerSideTimeout(): void
    {
        // The client's timeout is sent with the call: the server gives up first and answers -32001.
        $client = new Client(Env::tcp(), ['timeout' => 0.3]);
        try {
            $client->call('t.sleep', 2);
            $this->fail('no timeout');
        } catch (Ppy\TimeoutException $e) {
            $this->assertInstanceOf(Ppy\RemoteTimeoutException::class, $e);
            $this->assertInstanceOf(Ppy\RemoteException::class, $e);  // still one, with getData()
            $this->assertSame(-32001, $e->getCode());
            $this->assertSame(0.3, $e->getData()['timeout']);
        }
        $this->assertSame('hello, after!', $client->call('t.greet', 'after'));
    }

    public function testCatchTimeoutExceptionCatchesTheClientSideTimeout(): void
    {
        $server = new ScriptedServer([[['readline'], ['sleep', 3000]]]);
        try {
            (new Client($server->uri(), ['timeout' => 0.2, 'persistent' => false]))->call('t.greet', 'x');
            $this->fail('no timeout');
        } catch (Ppy\TimeoutException $e) {
            $this->assertInstanceOf(Ppy\ClientTimeoutException::class, $e);
            $this->assertNotInstanceOf(Ppy\RemoteException::class, $e);
            $this->assertStringContainsString('no reply', $e->getMessage());
        }
    }

    public function testEveryExceptionIsAnExceptionInterfaceAndAPpyException(): void
    {
        $classes = [Ppy\ConnectionException::class, Ppy\ProtocolException::class, Ppy\ClientTimeoutException::class,
            Ppy\RemoteException::class, ...array_values(Ppy\RemoteException::CLASSES)];
        foreach ($classes as $class) {
            $this->assertTrue(is_subclass_of($class, Ppy\ExceptionInterface::class), $class);
            $this->assertTrue(is_subclass_of($class, Ppy\PpyException::class), $class);
        }
        $this->assertSame(\RuntimeException::class, get_parent_class(Ppy\PpyException::class));
        $timeouts = array_filter($classes, fn ($c) => is_subclass_of($c, Ppy\TimeoutException::class));
        $expected = [Ppy\ClientTimeoutException::class, Ppy\RemoteTimeoutException::class];
        $this->assertSame($expected, array_values($timeouts));
    }

    public function testTheOldNameIsTheSameClass(): void
    {
        $this->assertSame(Ppy\PpyException::class, get_class(new Ppy\Exception('x')));
        $e = new Ppy\ApplicationException('boom', -32000);
        $this->assertInstanceOf(Ppy\Exception::class, $e);
    }

    /** In a fresh process nothing has named Ppy\Exception: `catch` does not autoload, so the alias must exist. */
    public function testCatchTheOldNameInAFreshProcess(): void
    {
        $code = 'require ' . var_export(dirname(__DIR__) . '/autoload.php', true) . ';'
            . '$c = new Ppy\\Client(' . var_export(Env::tcp(), true) . ', ["timeout" => 0.3]);'
            . 'try { $c->call("t.fail", "boom"); } catch (Ppy\\Exception $e) { echo get_class($e), "|"; }'
            . 'try { $c->call("t.sleep", 2); } catch (Ppy\\TimeoutException $e) { echo get_class($e), "|"; }'
            . 'try { $c->call("t.nope"); } catch (Ppy\\ExceptionInterface $e) { echo get_class($e); }';
        $out = shell_exec(escapeshellarg(PHP_BINARY) . ' -r ' . escapeshellarg($code) . ' 2>&1');
        $this->assertSame('Ppy\\ApplicationException|Ppy\\RemoteTimeoutException|Ppy\\MethodNotFoundException', $out);
    }

    /** TimeoutException is an interface: code merged from elsewhere must throw ClientTimeoutException. */
    public function testNothingInstantiatesTheInterface(): void
    {
        foreach (glob(dirname(__DIR__) . '/src/*.php') as $file) {
            $this->assertStringNotContainsString('new TimeoutException(', (string) file_get_contents($file), $file);
        }
    }
}
