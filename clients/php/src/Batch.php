<?php

declare(strict_types=1);

namespace Ppy;

/**
 * Calls collected on the client side, sent as one JSON-RPC batch (one write, one read):
 *
 *     [$hello, $sum] = $ppy->batch()
 *         ->call('h.hello')
 *         ->call('h.add', 1, 2)
 *         ->notify('audit.log', 'page viewed')      // runs, no entry in the results
 *         ->send();
 *
 * send() returns one entry per call(), in order; a call that failed on the server
 * has its RemoteException object in its place (check with instanceof), so one
 * failure does not hide the other results. The server runs the calls of a batch
 * concurrently and caps a batch at 100 requests by default (--max-batch).
 */
final class Batch implements \Countable
{
    /** @var list<array{0: string, 1: array<int|string, mixed>|object, 2: bool}> */
    private array $calls = [];

    public function __construct(private Client $client)
    {
    }

    public function call(string $method, mixed ...$args): self
    {
        $this->calls[] = [$method, Wire::params($args), false];
        return $this;
    }

    public function notify(string $method, mixed ...$args): self
    {
        $this->calls[] = [$method, Wire::params($args), true];
        return $this;
    }

    /** `$batch->h->hello()` adds a call to "h.hello" and returns the batch. */
    public function __get(string $name): Proxy
    {
        return new Proxy(fn (string $method, array $args): self => $this->call($method, ...$args), $name);
    }

    /**
     * Send the collected calls and return their results in order. The batch is emptied,
     * so it can be filled and sent again.
     *
     * @return list<mixed>
     */
    public function send(): array
    {
        $calls = $this->calls;
        $this->calls = [];
        return $this->client->sendBatch($calls);
    }

    public function count(): int
    {
        return count($this->calls);
    }
}
