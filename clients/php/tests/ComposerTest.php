<?php

declare(strict_types=1);

namespace Ppy\Tests;

use PHPUnit\Framework\TestCase;

/** composer.json declares what Composer needs: PSR-4 Ppy\ => src/ (every class loads) and the functions file. */
final class ComposerTest extends TestCase
{
    public function testComposerJsonMapsEveryClass(): void
    {
        $root = dirname(__DIR__);
        $composer = json_decode((string) file_get_contents("$root/composer.json"), true, 64, JSON_THROW_ON_ERROR);
        $this->assertSame('src/', $composer['autoload']['psr-4']['Ppy\\']);
        $this->assertSame(['src/functions.php'], $composer['autoload']['files']);
        $this->assertSame('>=8.1', $composer['require']['php']);
        $this->assertSame(['php'], array_keys($composer['require']), 'no Composer dependency');
        // Load every file in a fresh PHP process with only a Composer-style PSR-4 loader.
        $loader = 'spl_autoload_register(function ($c) { $f = ' . var_export("$root/src/", true)
            . ' . str_replace("\\\\", "/", substr($c, 4)) . ".php"; if (str_starts_with($c, "Ppy\\\\") && is_file($f)) '
            . 'require $f; }); require ' . var_export("$root/src/functions.php", true) . ';';
        $classes = [];
        foreach (glob("$root/src/*.php") as $file) {
            if (basename($file) !== 'functions.php') {
                $classes[] = 'Ppy\\' . basename($file, '.php');
            }
        }
        $check = $loader . ' foreach (' . var_export($classes, true) . ' as $c) { if (!class_exists($c) '
            . '&& !interface_exists($c)) { echo "missing $c"; exit(1); } } '
            . 'echo function_exists("ppy_exchange") ? "ok" : "no fn";';
        $out = shell_exec(escapeshellarg(PHP_BINARY) . ' -r ' . escapeshellarg($check) . ' 2>&1');
        $this->assertSame('ok', $out);
        $this->assertGreaterThanOrEqual(18, count($classes));
    }

    public function testWorksWithoutPhpIniOrSharedExtensions(): void
    {
        // `php -n`: no php.ini, so no shared extension (sockets, mbstring, ...) is loaded.
        $code = 'require ' . var_export(dirname(__DIR__) . '/autoload.php', true) . ';'
            . '$c = new Ppy\\Client(' . var_export(Support\Env::tcp(), true) . ');'
            . 'echo $c->call("t.greet", "bare"), " ", $c->batch()->call("t.add", 1, 2)->send()[0], " ",'
            . 'ppy_exchange("t", "greet", ["legacy"]);';
        $env = 'PPY_PORT=' . escapeshellarg(Support\Env::get('PPY_TEST_PORT'));
        $out = shell_exec("$env " . escapeshellarg(PHP_BINARY) . ' -n -r ' . escapeshellarg($code) . ' 2>&1');
        $this->assertSame('hello, bare! 3 {"data": "hello, legacy!", "error": ""}', $out);
    }
}
