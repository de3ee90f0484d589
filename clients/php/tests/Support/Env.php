<?php

declare(strict_types=1);

namespace Ppy\Tests\Support;

/** Where the servers under test are, from PPY_TEST_* variables (or servers started here). */
final class Env
{
    public const ROOT = __DIR__ . '/../../../..';

    /** @var list<ServerProcess> */
    private static array $owned = [];

    public static function boot(): void
    {
        if (getenv('PPY_TEST_PORT') !== false) {
            return;
        }
        // Standalone run: start the same three servers the pytest driver starts.
        $uds = sys_get_temp_dir() . '/ppy-phpunit-' . getmypid() . '.sock';
        $token = bin2hex(random_bytes(16));
        $tokenFile = sys_get_temp_dir() . '/ppy-phpunit-' . getmypid() . '.token';
        file_put_contents($tokenFile, $token);
        $main = ServerProcess::start(self::app(), ['--uds', $uds, '--timeout', '5']);
        $secured = ServerProcess::start(self::app(), ['--token-file', $tokenFile]);
        $limits = ServerProcess::start(self::app(), ['--max-inflight', '1']);
        self::$owned = [$main, $secured, $limits];
        putenv("PPY_TEST_PORT={$main->port}");
        putenv("PPY_TEST_UDS=$uds");
        putenv("PPY_TEST_TOKEN_PORT={$secured->port}");
        putenv("PPY_TEST_TOKEN=$token");
        putenv("PPY_TEST_LIMITS_PORT={$limits->port}");
        register_shutdown_function(static function () use ($tokenFile): void {
            foreach (self::$owned as $server) {
                $server->stop();
            }
            @unlink($tokenFile);
        });
    }

    public static function get(string $name): string
    {
        $value = getenv($name);
        if ($value === false || $value === '') {
            throw new \RuntimeException("$name is not set; run the tests through tests/test_php_client.py");
        }
        return $value;
    }

    public static function tcp(): string
    {
        return 'tcp://127.0.0.1:' . self::get('PPY_TEST_PORT');
    }

    public static function unix(): string
    {
        return 'unix://' . self::get('PPY_TEST_UDS');
    }

    public static function python(): string
    {
        return getenv('PPY_TEST_PYTHON') ?: 'python3';
    }

    public static function app(): string
    {
        return getenv('PPY_TEST_APP') ?: realpath(self::ROOT . '/tests/apps/php');
    }

    public static function vectors(): string
    {
        return getenv('PPY_TEST_VECTORS') ?: realpath(self::ROOT . '/tests/vectors');
    }

    /** A TCP port nothing listens on (bound, then released). */
    public static function closedPort(): int
    {
        $server = stream_socket_server('tcp://127.0.0.1:0');
        $port = (int) substr(strrchr(stream_socket_get_name($server, false), ':'), 1);
        fclose($server);
        return $port;
    }
}
