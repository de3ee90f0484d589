<?php

declare(strict_types=1);

namespace Ppy;

/** JSON-RPC error -32602. The arguments do not match the Python signature or its type annotations (the message names the parameter). */
class InvalidParamsException extends RemoteException
{
}
