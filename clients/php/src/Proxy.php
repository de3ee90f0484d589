<?php

declare(strict_types=1);

namespace Ppy;

/**
 * Attribute sugar: `$client->billing->invoice->total($lines)` calls "billing.invoice.total".
 *
 * Each `->name` adds one dotted part; the final method call sends everything
 * collected so far. Named arguments become keyword arguments.
 */
final class Proxy
{
    /** @param \Closure(string, array<int|string, mixed>): mixed $invoke */
    public function __construct(private \Closure $invoke, private string $prefix)
    {
    }

    public function __get(string $name): self
    {
        return new self($this->invoke, $this->prefix . '.' . $name);
    }

    /** @param array<int|string, mixed> $args */
    public function __call(string $name, array $args): mixed
    {
        return ($this->invoke)($this->prefix . '.' . $name, $args);
    }
}
