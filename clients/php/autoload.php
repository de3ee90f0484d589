<?php

/**
 * Use the ppy client without Composer:  require '/path/to/ppy/clients/php/autoload.php';
 *
 * Registers a PSR-4 autoloader for Ppy\ => src/ (what composer.json declares) and
 * loads ppy_exchange().
 */

declare(strict_types=1);

spl_autoload_register(static function (string $class): void {
    if (strncmp($class, 'Ppy\\', 4) !== 0) {
        return;
    }
    $file = __DIR__ . '/src/' . str_replace('\\', '/', substr($class, 4)) . '.php';
    if (is_file($file)) {
        require $file;
    }
});

require_once __DIR__ . '/src/functions.php';
