<?php

declare(strict_types=1);

use Ppy\Client;
use Ppy\Legacy;

if (!function_exists('ppy_exchange')) {
    /**
     * Drop-in for the seed's exchange(): call $entry.$func over the legacy dialect and return
     * the reply's JSON string, e.g. '{"data": "hello, world.", "error": ""}'.
     *
     * Like the seed it opens one connection per call and returns failures the server reports
     * in "error" (check it as before). Unlike the seed it throws instead of die():
     * \InvalidArgumentException for bad arguments, Ppy\ConnectionException when the server
     * cannot be reached, Ppy\TimeoutException past the timeout, Ppy\ProtocolException for a
     * malformed reply.
     *
     * The server is found as the seed found it: the constants PPY_HOST / PPY_PORT when defined,
     * else the environment variables of the same names, else 127.0.0.1:32123.
     *
     * @param string $entry    the Python module, e.g. 'h' or 'billing.invoice'
     * @param string $func     the function in it
     * @param array<int|string, mixed> $param positional (list) or keyword (associative) arguments
     * @param array{timeout?: int|float, connect_timeout?: int|float, token?: string} $options
     *        timeout: seconds to wait for the reply (default 30; when given it is also sent as the call's
     *        deadline, and the client waits Ppy\Client::GRACE longer for the server's reply);
     *        connect_timeout: default 5; token: else the constant/env PPY_TOKEN when set
     */
    function ppy_exchange($entry = '', $func = '', $param = [], array $options = []): string
    {
        if (!is_string($entry) || $entry === '' || !is_string($func) || $func === '') {
            throw new \InvalidArgumentException('ppy_exchange(): entry and func must be non-empty strings, '
                . "e.g. ppy_exchange('h', 'hello')");
        }
        if (!is_array($param)) {
            throw new \InvalidArgumentException('ppy_exchange(): param must be an array (positional values or '
                . 'name => value)');
        }
        foreach (array_keys($options) as $name) {
            if (!in_array($name, ['timeout', 'connect_timeout', 'token'], true)) {
                throw new \InvalidArgumentException("ppy_exchange(): unknown option '$name'; known options: "
                    . 'timeout, connect_timeout, token');
            }
        }
        $timeout = $options['timeout'] ?? null;
        $connectTimeout = $options['connect_timeout'] ?? 5.0;
        foreach (['timeout' => $timeout ?? 1, 'connect_timeout' => $connectTimeout] as $name => $value) {
            if ((!is_int($value) && !is_float($value)) || !($value > 0)) {
                throw new \InvalidArgumentException("ppy_exchange(): option '$name' must be a positive number "
                    . 'of seconds');
            }
        }
        $token = $options['token'] ?? ppy_setting('PPY_TOKEN', null);
        $host = (string) ppy_setting('PPY_HOST', '127.0.0.1');
        $port = (int) ppy_setting('PPY_PORT', (string) Client::DEFAULT_PORT);
        $address = str_contains($host, ':') && $host[0] !== '[' ? "tcp://[$host]:$port" : "tcp://$host:$port";
        $payload = Legacy::encodePayload(
            $entry,
            $func,
            $param,
            $token === null ? null : (string) $token,
            $timeout === null ? null : (float) $timeout
        );
        // As Ppy\Client does: wait a little past the deadline the server got, for its own timeout reply.
        return Legacy::exchange(
            $address,
            Legacy::encodeFrame($payload),
            (float) ($timeout ?? 30.0) + Client::GRACE,
            (float) $connectTimeout
        );
    }

    /**
     * A setting as the seed read it: a constant when defined, else an environment variable, else $default.
     *
     * @internal
     */
    function ppy_setting(string $name, ?string $default): mixed
    {
        if (defined($name)) {
            return constant($name);
        }
        $env = getenv($name);
        return $env === false || $env === '' ? $default : $env;
    }
}
