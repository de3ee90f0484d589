<?php

declare(strict_types=1);

namespace Ppy;

/**
 * The server sent bytes that are not a valid reply (not JSON, a bad legacy header, ...).
 * The connection is dropped, since nothing after such bytes can be trusted.
 */
class ProtocolException extends ConnectionException
{
}
