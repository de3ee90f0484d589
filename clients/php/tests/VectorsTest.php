<?php

declare(strict_types=1);

namespace Ppy\Tests;

use PHPUnit\Framework\TestCase;
use Ppy;
use Ppy\Tests\Support\Env;
use Ppy\Tests\Support\ScriptedServer;

/**
 * The byte vectors in tests/vectors/*.json, shared with the Python tests, so PHP and
 * Python agree byte for byte on what goes over the wire.
 */
final class VectorsTest extends TestCase
{
    /** @return list<array<string, mixed>> */
    private static function vectors(string $file): array
    {
        $path = Env::vectors() . "/$file";
        self::assertFileExists($path);
        $doc = json_decode((string) file_get_contents($path), true, 512, JSON_THROW_ON_ERROR);
        self::assertNotEmpty($doc['vectors']);
        return $doc['vectors'];
    }

    /** A bytes field: {"text": ...} (UTF-8), {"hex": ...} or {"base64": ...}. */
    private static function bytes(array $field): string
    {
        if (array_key_exists('text', $field)) {
            return $field['text'];
        }
        if (array_key_exists('hex', $field)) {
            return (string) hex2bin($field['hex']);
        }
        if (array_key_exists('base64', $field)) {
            return (string) base64_decode($field['base64'], true);
        }
        throw new \UnexpectedValueException('unknown bytes encoding: ' . implode(',', array_keys($field)));
    }

    /** The vector's JSON value as PHP decodes it from the wire (json_decode of its JSON text). */
    private static function asDecoded(mixed $value): mixed
    {
        return json_decode(json_encode($value, JSON_PRESERVE_ZERO_FRACTION), true);
    }

    public function testRequestsAreEncodedLikePython(): void
    {
        $seen = 0;
        foreach (self::vectors('jsonrpc_encoding.json') as $v) {
            if (!isset($v['request'])) {
                continue;
            }
            $r = $v['request'];
            $params = $r['params'] ?? [];
            $emptyObject = str_contains(self::bytes($v['bytes']), '"params":{}');
            if ($params === [] && is_array($r['params'] ?? null) && $emptyObject) {
                $params = new \stdClass();
            }
            $line = Ppy\Wire::encodeRequest(
                $r['method'],
                $params,
                $r['id'] ?? null,
                $r['notify'] ?? false,
                isset($r['timeout']) ? (float) $r['timeout'] : null
            );
            $this->assertSame(self::bytes($v['bytes']), $line, $v['name']);
            $seen++;
        }
        $this->assertGreaterThan(0, $seen);
    }

    public function testRepliesDecodeToTheSameValuesAndExceptions(): void
    {
        foreach (self::vectors('jsonrpc_encoding.json') as $v) {
            $bytes = self::bytes($v['bytes']);
            if (array_key_exists('result', $v)) {
                $reply = Ppy\Wire::decodeReply($bytes);
                $this->assertSame($v['id'], $reply['id'], $v['name']);
                $this->assertSame(self::asDecoded($v['result']), Ppy\Wire::resultOf($reply), $v['name']);
            } elseif (array_key_exists('error', $v)) {
                try {
                    Ppy\Wire::resultOf(Ppy\Wire::decodeReply($bytes));
                    $this->fail($v['name'] . ': no exception');
                } catch (Ppy\RemoteException $e) {
                    $this->assertSame($v['error']['code'], $e->getCode(), $v['name']);
                    $this->assertSame($v['error']['message'], $e->getMessage(), $v['name']);
                    $this->assertSame($v['error']['data'] ?? [], $e->getData(), $v['name']);
                    $class = Ppy\RemoteException::CLASSES[$v['error']['code']] ?? Ppy\RemoteException::class;
                    $this->assertInstanceOf($class, $e, $v['name']);
                }
            } elseif (array_key_exists('batch', $v)) {
                $replies = Ppy\Wire::decodeReply($bytes);
                $this->assertCount(count($v['batch']), $replies, $v['name']);
                foreach ($v['batch'] as $i => $item) {
                    $this->assertSame($item['id'], $replies[$i]['id']);
                }
            }
        }
    }

    public function testLegacyFramesThePhpClientSendsAreTheVectorsBytes(): void
    {
        $seen = 0;
        foreach (self::vectors('legacy_frames.json') as $v) {
            if (($v['error'] ?? null) !== null || count($v['messages'] ?? []) !== 1) {
                continue;
            }
            $payload = self::bytes($v['messages'][0]);
            $frame = implode('', array_map([self::class, 'bytes'], $v['input']));
            if ($frame !== Ppy\Legacy::encodeFrame($payload)) {
                continue;  // vectors with trailing bytes or odd but valid headers
            }
            $this->assertSame($frame, Ppy\Legacy::encodeFrame($payload), $v['name']);
            $seen++;
            // Payloads as the seed's PHP json_encode() writes them are what ppy_exchange() writes.
            $doc = json_decode($payload, true);
            if (
                is_array($doc) && isset($doc['entry'], $doc['func']) && !str_contains($payload, '": ')
                && !preg_match('/[\x80-\xff]/', $payload)
            ) {
                $this->assertSame(
                    $payload,
                    Ppy\Legacy::encodePayload($doc['entry'], $doc['func'], $doc['param'] ?? []),
                    $v['name']
                );
            }
        }
        $this->assertGreaterThan(0, $seen);
    }

    public function testLegacyHeadersParseLikePython(): void
    {
        foreach (self::vectors('legacy_frames.json') as $v) {
            $stream = implode('', array_map([self::class, 'bytes'], $v['input']));
            if (strlen($stream) < 11) {
                continue;
            }
            $header = substr($stream, 0, 11);
            $code = $v['error']['code'] ?? null;
            $limit = $v['max_frame_bytes'] ?? PHP_INT_MAX;
            if ($code === null && $v['messages'] !== []) {
                $this->assertSame(strlen(self::bytes($v['messages'][0])), Ppy\Legacy::parseHeader($header), $v['name']);
            } elseif ($code === -32700 && $v['messages'] === []) {
                try {
                    $size = Ppy\Legacy::parseHeader($header);
                    // The client has no frame limit; a header the server refuses for size is still well-formed.
                    $this->assertGreaterThan($limit, $size, $v['name']);
                } catch (Ppy\ProtocolException $e) {
                    $this->assertStringContainsString('header', $e->getMessage());
                }
            }
        }
    }

    public function testLegacyRepliesAreReturnedExactlyOverARealSocket(): void
    {
        $vectors = self::vectors('legacy_replies.json');
        // Every reply vector, one connection each, delivered a few bytes at a time.
        $server = new ScriptedServer(array_map(
            fn (array $v): array => [['readlegacy'], ['send', self::bytes($v['bytes']), 3, 0]],
            $vectors
        ));
        putenv("PPY_PORT={$server->port}");
        try {
            foreach ($vectors as $v) {
                $bytes = self::bytes($v['bytes']);
                $payload = ppy_exchange('h', 'hello');
                $this->assertSame(substr($bytes, 11), $payload, $v['name']);
                $decoded = json_decode($payload, true, 512, JSON_BIGINT_AS_STRING);
                if (array_key_exists('result', $v)) {
                    $this->assertSame('', $decoded['error'], $v['name']);
                } else {
                    $this->assertSame($v['error'], $decoded['error'], $v['name']);
                    $this->assertSame([], $decoded['data'], $v['name']);
                }
            }
        } finally {
            putenv('PPY_PORT');
        }
        $server->finish();
    }
}
