<?php
// The demo's chat, the PHP side: what a PHP application does with fastsse's Mercure hub. It never
// holds a stream (no loop, no sleep, no polling): a POST publishes one update with Symfony's Mercure
// component and returns at once; fastsse, behind the same nginx, delivers it to every open tab.
//
//   GET  chat.php   sets the mercureAuthorization cookie (a subscriber token for the chat's topic)
//                   that the page's EventSource sends to /.well-known/mercure; 204.
//   POST chat.php   name, message (a form): publishes {"name", "message", "time"} to the topic;
//                   answers the update's id (text/plain), or 303 back to chat.html for a form
//                   posted without JavaScript.
//
// demo/run runs it under php-fpm with the keys in the pool's environment: MERCURE_PUBLISHER_JWT_KEY
// and MERCURE_SUBSCRIBER_JWT_KEY (the same fastsse reads; demo/run generates them at each start)
// and MERCURE_URL, the hub as this server reaches it.

declare(strict_types=1);

require_once 'Symfony/Component/Mercure/autoload.php';   // Debian's php-symfony-mercure, no Composer

use Symfony\Component\Mercure\Hub;
use Symfony\Component\Mercure\Jwt\StaticTokenProvider;
use Symfony\Component\Mercure\Update;

const TOPIC = 'https://fastsse.example/demo/chat';
const TOKEN_LIFETIME = 12 * 3600;   // s; the hub ends a subscriber's stream when its token expires

function b64url(string $bytes): string
{
    return rtrim(strtr(base64_encode($bytes), '+/', '-_'), '=');
}

// An HS256 token; a Symfony application would use lcobucci/jwt (LcobucciFactory), which Debian
// does not package.
function jwt(array $claims, string $key): string
{
    $header = b64url(json_encode(['alg' => 'HS256', 'typ' => 'JWT']));
    $payload = b64url(json_encode($claims, JSON_UNESCAPED_SLASHES));
    return "$header.$payload." . b64url(hash_hmac('sha256', "$header.$payload", $key, true));
}

function answer(int $status, string $text): never
{
    http_response_code($status);
    header('Content-Type: text/plain; charset=utf-8');
    header('Cache-Control: no-store');
    echo $text, "\n";
    exit;
}

function env(string $name): string
{
    $value = getenv($name);
    if ($value === false || $value === '') {
        answer(500, "$name is not set in php-fpm's pool");
    }
    return $value;
}

$method = $_SERVER['REQUEST_METHOD'] ?? 'GET';
if ($method === 'GET') {
    $token = jwt(['mercure' => ['subscribe' => [TOPIC]], 'exp' => time() + TOKEN_LIFETIME],
                 env('MERCURE_SUBSCRIBER_JWT_KEY'));
    // Sent only to the hub, unreadable by scripts, never on requests from other sites.
    setcookie('mercureAuthorization', $token, ['expires' => time() + TOKEN_LIFETIME,
              'path' => '/.well-known/mercure', 'httponly' => true, 'samesite' => 'Strict']);
    http_response_code(204);
    header('Cache-Control: no-store');
    exit;
}
if ($method !== 'POST') {
    header('Allow: GET, POST');
    answer(405, 'GET or POST');
}

// Bounded, and trimmed; the page shows them with textContent, never as HTML.
$name = trim((string) ($_POST['name'] ?? ''));
$message = trim((string) ($_POST['message'] ?? ''));
if ($name === '') {
    $name = 'anonymous';
}
if ($message === '') {
    answer(400, 'an empty message');
}
if (preg_match('//u', $name . $message) !== 1 || strlen($name) > 40 || strlen($message) > 500) {
    answer(400, 'a name up to 40 bytes and a message up to 500, in UTF-8');
}

$hub = new Hub(env('MERCURE_URL'), new StaticTokenProvider(
    jwt(['mercure' => ['publish' => [TOPIC]]], env('MERCURE_PUBLISHER_JWT_KEY'))));
try {
    $id = $hub->publish(new Update(TOPIC, json_encode(
        ['name' => $name, 'message' => $message, 'time' => gmdate('c')], JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES)));
} catch (\Throwable $e) {
    error_log('chat.php: publishing failed: ' . $e->getMessage() . ($e->getPrevious() ? ': ' . $e->getPrevious()->getMessage() : ''));
    answer(502, 'the hub did not take the message');
}

if (str_contains($_SERVER['HTTP_ACCEPT'] ?? '', 'text/html')) {
    header('Location: chat.html', true, 303);   // a form posted without JavaScript: back to the page
    exit;
}
answer(200, $id);
