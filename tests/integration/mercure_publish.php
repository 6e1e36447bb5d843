<?php
// A real PHP publisher for fastsse's Mercure hub, as a Symfony application publishes: Debian's
// php-symfony-mercure (Hub, Update, StaticTokenProvider), loaded through Debian's autoloader (no
// Composer), its HTTP client without the curl extension (symfony/http-client falls back to PHP's
// own streams). tests/integration/test_hub_php.py runs it; prints the update's id, as the hub
// answered it, on stdout.
//
//   MERCURE_PUBLISHER_JWT_KEY=... php mercure_publish.php HUB_URL MODE TOPIC [TOPIC...] \
//       [--data=TEXT] [--private] [--id=ID] [--type=TYPE] [--publish=SELECTOR]
//
// MODE: `symfony` (the component), or `plain` (file_get_contents with a stream context, the
// README's example for an application without the component). The key comes from the environment,
// never argv (ps shows argv). --publish: the token's mercure.publish claim (default "*").
// Exit 0 with the id printed; 1 with the reason on stderr (the hub's status and answer included).

declare(strict_types=1);

require_once 'Symfony/Component/Mercure/autoload.php';   // /usr/share/php, in Debian's include_path

use Symfony\Component\Mercure\Hub;
use Symfony\Component\Mercure\Jwt\StaticTokenProvider;
use Symfony\Component\Mercure\Update;

function b64url(string $bytes): string
{
    return rtrim(strtr(base64_encode($bytes), '+/', '-_'), '=');
}

// An HS256 token with a mercure.publish claim: what lcobucci/jwt would make (Debian has no package
// of it), in a few lines of PHP's own hash_hmac.
function publisher_jwt(string $key, array $publish): string
{
    $header = b64url(json_encode(['alg' => 'HS256', 'typ' => 'JWT']));
    $payload = b64url(json_encode(['mercure' => ['publish' => $publish]], JSON_UNESCAPED_SLASHES));
    return "$header.$payload." . b64url(hash_hmac('sha256', "$header.$payload", $key, true));
}

function fail(string $why): never
{
    fwrite(STDERR, "mercure_publish.php: $why\n");
    exit(1);
}

[$hubUrl, $mode] = [$argv[1] ?? fail('no hub URL'), $argv[2] ?? fail('no mode')];
$topics = [];
$data = '';
$private = false;
$id = null;
$type = null;
$publish = [];
foreach (array_slice($argv, 3) as $arg) {
    if (str_starts_with($arg, '--data=')) {
        $data = substr($arg, 7);
    } elseif ($arg === '--private') {
        $private = true;
    } elseif (str_starts_with($arg, '--id=')) {
        $id = substr($arg, 5);
    } elseif (str_starts_with($arg, '--type=')) {
        $type = substr($arg, 7);
    } elseif (str_starts_with($arg, '--publish=')) {
        $publish[] = substr($arg, 10);
    } else {
        $topics[] = $arg;
    }
}
if (!$topics) {
    fail('no topic');
}
$key = getenv('MERCURE_PUBLISHER_JWT_KEY');
if ($key === false || $key === '') {
    fail('MERCURE_PUBLISHER_JWT_KEY is not set');
}
$jwt = publisher_jwt($key, $publish ?: ['*']);

if ($mode === 'symfony') {
    $hub = new Hub($hubUrl, new StaticTokenProvider($jwt));
    try {
        echo $hub->publish(new Update($topics, $data, $private, $id, $type)), "\n";
    } catch (\Throwable $e) {
        // The HTTP client's exception (status, answer) is the previous one.
        $cause = $e->getPrevious();
        fail(get_class($e) . ': ' . $e->getMessage() . ($cause ? ' (' . $cause->getMessage() . ')' : ''));
    }
} elseif ($mode === 'plain') {
    // The form the hub expects: topic repeated (http_build_query would write topic[0]=...).
    $fields = array_map(fn ($t) => 'topic=' . rawurlencode($t), $topics);
    $fields[] = 'data=' . rawurlencode($data);
    if ($private) {
        $fields[] = 'private=on';
    }
    if ($id !== null) {
        $fields[] = 'id=' . rawurlencode($id);
    }
    if ($type !== null) {
        $fields[] = 'type=' . rawurlencode($type);
    }
    $context = stream_context_create(['http' => [
        'method' => 'POST',
        'header' => "Authorization: Bearer $jwt\r\nContent-Type: application/x-www-form-urlencoded\r\n",
        'content' => implode('&', $fields),
        'ignore_errors' => true,   // read the hub's answer on 4xx too: its reason is in the body
    ]]);
    $answer = file_get_contents($hubUrl, false, $context);
    $status = $http_response_header[0] ?? 'no answer';
    if ($answer === false || !preg_match('{^HTTP/\S+ 200 }', $status)) {
        fail("$status: " . var_export($answer, true));
    }
    echo $answer, "\n";
} else {
    fail("unknown mode $mode (symfony or plain)");
}
