<?php

declare(strict_types=1);

namespace Ppy;

/** JSON-RPC error -32000. The Python function raised: getType() is its exception class name, getMessage() its message. */
class ApplicationException extends RemoteException
{
}
