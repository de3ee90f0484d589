<?php
// Drive the seed's exchange() from a test: php call.php ENTRY FUNC < params.json
//
// seed_client.php is the 2013 client copied verbatim from seed.txt, changed only for PHP 8
// ($entry{0} -> $entry[0]) and to read PPY_PORT from the environment.  Its own trailing demo
// line (print_r(exchange('h', 'hello'))) runs on require; its output is discarded here.
// The parameters come on stdin as JSON (a 1 MiB string does not fit in argv) and exchange()'s
// return value -- the reply payload, exactly as the seed's PHP code receives it -- is printed
// unchanged.
ob_start();
require __DIR__ . '/seed_client.php';
ob_end_clean();

$param = json_decode(stream_get_contents(STDIN), true);
echo exchange($argv[1], $argv[2], $param);
