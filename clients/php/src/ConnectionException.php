<?php

declare(strict_types=1);

namespace Ppy;

/** The server cannot be reached, or the connection broke before the reply was complete. */
class ConnectionException extends PpyException
{
}
