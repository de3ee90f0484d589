<?php

declare(strict_types=1);

namespace Ppy;

/**
 * Implemented by every exception the ppy client throws: `catch (Ppy\ExceptionInterface $e)` covers
 * them all (as `catch (Ppy\PpyException $e)` does; the interface is for code that prefers to catch
 * interfaces, as PSR-style libraries offer).
 */
interface ExceptionInterface extends \Throwable
{
}
