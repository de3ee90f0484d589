<?php

declare(strict_types=1);

namespace Ppy;

/**
 * No connection or no reply within the client's `connect_timeout` / `timeout`.
 *
 * The connection is dropped (a late reply must never be read as the answer to
 * the next call). The call may or may not have run on the server. Catch it as
 * Ppy\TimeoutException, which a server-side timeout (-32001) also is.
 */
class ClientTimeoutException extends PpyException implements TimeoutException
{
}
