<?php

declare(strict_types=1);

namespace Ppy;

/*
 * Ppy\Exception: the old name of Ppy\PpyException, deprecated, kept for one release.
 *
 * It is an alias, made by PpyException.php (so the two are the same class, and
 * `catch (Ppy\Exception $e)` in existing code still catches every ppy exception). This file only
 * serves code that names Ppy\Exception before any ppy exception class has loaded
 * (`new Ppy\Exception(...)`, `class_exists('Ppy\Exception')`): loading PpyException makes the alias.
 */
class_exists(PpyException::class);
