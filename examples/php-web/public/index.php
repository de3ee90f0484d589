<?php

/**
 * The seed's scenario, end to end: a PHP web page calling Python functions through ppy.
 *
 *   ppy serve examples/php-web/app                 # the Python side (port 32123)
 *   php -S 127.0.0.1:8080 -t examples/php-web/public
 *   open http://127.0.0.1:8080/?name=Zoë&numbers=3,4,5
 *
 * PPY_HOST / PPY_PORT (environment) point it at another server.
 */

declare(strict_types=1);

require __DIR__ . '/../../../clients/php/autoload.php';

$host = getenv('PPY_HOST') ?: '127.0.0.1';
$port = getenv('PPY_PORT') ?: '32123';
$name = (string) ($_GET['name'] ?? 'world');
$numbers = array_values(array_filter(array_map('trim', explode(',', (string) ($_GET['numbers'] ?? '1,2,3,4'))),
    static fn (string $n): bool => $n !== ''));

function e(mixed $value): string
{
    return htmlspecialchars((string) $value, ENT_QUOTES | ENT_SUBSTITUTE, 'UTF-8');
}

$rows = [];
try {
    // The seed's way, through the drop-in: same JSON string as exchange() returned in 2013.
    $legacy = json_decode(ppy_exchange('h', 'hello'), true);
    $rows['ppy_exchange(\'h\', \'hello\')'] = $legacy['error'] !== '' ? 'error: ' . $legacy['error'] : $legacy['data'];

    // The new client: persistent connection, typed exceptions, named arguments.
    $ppy = new Ppy\Client("tcp://$host:$port", ['timeout' => 5]);
    $rows['$ppy->h->greet(name: …)'] = $ppy->h->greet(name: $name);
    try {
        $s = $ppy->call('h.stats', $numbers);
        $rows['h.stats(' . implode(', ', $numbers) . ')'] = "mean {$s['mean']}, stdev {$s['stdev']}";
    } catch (Ppy\InvalidParamsException $err) {
        $rows['h.stats(' . implode(', ', $numbers) . ')'] = 'InvalidParams: ' . $err->getMessage();
    }
    $rows['h.python_version()'] = $ppy->call('h.python_version');
    $status = 200;
} catch (Ppy\PpyException $err) {
    $status = 503;
    $rows = ['error' => get_class($err) . ': ' . $err->getMessage()];
}
http_response_code($status);
header('Content-Type: text/html; charset=utf-8');
?>
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>PHP calls Python through ppy</title>
<style>
  body { font: 16px/1.5 system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; }
  table { border-collapse: collapse; width: 100%; } td, th { border-bottom: 1px solid #ddd; padding: .4rem; text-align: left; }
  code { background: #f4f4f4; padding: 0 .2rem; }
</style>
</head>
<body>
<h1>PHP → Python</h1>
<form method="get">
  <label>Name <input name="name" value="<?= e($name) ?>"></label>
  <label>Numbers <input name="numbers" value="<?= e(implode(',', $numbers)) ?>"></label>
  <button>Ask Python</button>
</form>
<table>
  <tr><th>PHP call</th><th>Python's answer</th></tr>
<?php foreach ($rows as $call => $answer): ?>
  <tr><td><code><?= e($call) ?></code></td><td><?= e($answer) ?></td></tr>
<?php endforeach ?>
</table>
<p>Server: <code><?= e("tcp://$host:$port") ?></code></p>
</body>
</html>
