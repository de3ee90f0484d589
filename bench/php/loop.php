<?php

/**
 * One PHP process making sequential h.hello calls for a while; prints {"calls", "seconds"} as JSON.
 *
 * Usage: php loop.php MODE TARGET SECONDS
 *   seed      the seed's exchange() (sockets ext, one connection per call); TARGET = port
 *   exchange  ppy_exchange() (legacy dialect, one connection per call);     TARGET = port
 *   raw       a bare fwrite()/fgets() loop on one persistent socket;       TARGET = tcp://... | unix://...
 *   client    Ppy\Client->call('h.hello') (persistent);                    TARGET = tcp://... | unix://...
 *
 * Each mode first checks that the answer is right, warms up for 0.3 s, then counts calls
 * for SECONDS. The loops are written out per mode so no mode pays for another's dispatch.
 */

declare(strict_types=1);

[, $mode, $target, $seconds] = $argv;
$seconds = (float) $seconds;
$root = dirname(__DIR__, 2);
require "$root/clients/php/autoload.php";

if ($mode === 'seed' || $mode === 'exchange') {
    define('PPY_HOST', '127.0.0.1');
    define('PPY_PORT', $target);
    require "$root/clients/php/tests/fixtures/seed_exchange.php";
}

$expected = ['seed' => '{"data": "hello, world.", "error": ""}', 'exchange' => '{"data": "hello, world.", "error": ""}',
             'raw' => null, 'client' => 'hello, world.'][$mode] ?? null;
$request = '{"jsonrpc":"2.0","method":"h.hello","params":[],"id":1}' . "\n";
$sock = null;
$client = null;
if ($mode === 'raw') {
    $sock = stream_socket_client($target, $errno, $errstr, 5, STREAM_CLIENT_CONNECT | STREAM_CLIENT_PERSISTENT);
    if ($sock === false) {
        fwrite(STDERR, "cannot connect to $target: $errstr\n");
        exit(1);
    }
} elseif ($mode === 'client') {
    $client = new Ppy\Client($target);
}

function once(string $mode, $sock, ?Ppy\Client $client, string $request): string
{
    return match ($mode) {
        'seed' => exchange('h', 'hello'),
        'exchange' => ppy_exchange('h', 'hello'),
        'raw' => (fwrite($sock, $request) ? (string) fgets($sock) : ''),
        'client' => $client->call('h.hello'),
    };
}

$answer = once($mode, $sock, $client, $request);
$ok = $mode === 'raw'
    ? str_ends_with($answer, "\n") && (json_decode($answer, true)['result'] ?? null) === 'hello, world.'
    : $answer === $expected;
if (!$ok) {
    fwrite(STDERR, "$mode: unexpected answer " . var_export($answer, true) . "\n");
    exit(1);
}

function run(string $mode, float $seconds, $sock, ?Ppy\Client $client, string $request): array
{
    $n = 0;
    $start = hrtime(true);
    $stop = $start + (int) ($seconds * 1e9);
    switch ($mode) {
        case 'seed':
            do {
                for ($i = 0; $i < 64; $i++) {
                    exchange('h', 'hello');
                }
                $n += 64;
            } while (hrtime(true) < $stop);
            break;
        case 'exchange':
            do {
                for ($i = 0; $i < 64; $i++) {
                    ppy_exchange('h', 'hello');
                }
                $n += 64;
            } while (hrtime(true) < $stop);
            break;
        case 'raw':
            do {
                for ($i = 0; $i < 64; $i++) {
                    fwrite($sock, $request);
                    fgets($sock);
                }
                $n += 64;
            } while (hrtime(true) < $stop);
            break;
        case 'client':
            do {
                for ($i = 0; $i < 64; $i++) {
                    $client->call('h.hello');
                }
                $n += 64;
            } while (hrtime(true) < $stop);
            break;
    }
    return [$n, (hrtime(true) - $start) / 1e9];
}

/** User + system CPU seconds of this PHP process so far. */
function cpu(): float
{
    $u = getrusage();
    return $u['ru_utime.tv_sec'] + $u['ru_utime.tv_usec'] / 1e6 + $u['ru_stime.tv_sec'] + $u['ru_stime.tv_usec'] / 1e6;
}

run($mode, 0.3, $sock, $client, $request);
$cpu = cpu();
[$calls, $elapsed] = run($mode, $seconds, $sock, $client, $request);
$cpu = cpu() - $cpu;
echo json_encode(['mode' => $mode, 'calls' => $calls, 'seconds' => $elapsed, 'php_cpu_seconds' => $cpu]), "\n";
