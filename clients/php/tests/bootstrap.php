<?php

/**
 * Test bootstrap. tests/test_php_client.py starts the ppy servers and passes them in
 * PPY_TEST_* environment variables; run alone (`phpunit -c clients/php`), this starts
 * them itself with `python3 -m ppy serve` (PPY_TEST_PYTHON picks the interpreter).
 */

declare(strict_types=1);

require __DIR__ . '/../autoload.php';
require __DIR__ . '/Support/ServerProcess.php';
require __DIR__ . '/Support/ScriptedServer.php';
require __DIR__ . '/Support/Env.php';

Ppy\Tests\Support\Env::boot();
